"""Return values as artifacts: JSON for plain values, pickle otherwise, written atomically."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError


def _plain(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v, depth + 1) for k, v in value.items())
    return False


def save(value: Any, directory: Path, name: str) -> str | None:
    """Store ``value``; return its reference, or None for ``None`` (nothing to store)."""
    if value is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    if _plain(value):
        path, data = directory / f"{name}.json", json.dumps(value).encode()
    else:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise ConveyorError(
                f"the return value ({type(value).__name__}) cannot be pickled: {exc}; return a "
                "plain value, or write it to an output target instead"
            ) from None
        path = directory / f"{name}.pkl"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return str(path)


def load(ref: str | None) -> Any:
    """The value behind a reference from ``save``."""
    if ref is None:
        return None
    try:
        if ref.endswith(".json"):
            with open(ref, "rb") as f:
                return json.loads(f.read())
        with open(ref, "rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        raise ConveyorError(
            f"the artifact {ref} is missing; re-run the task that produced it (conveyor run --force)"
        ) from None
