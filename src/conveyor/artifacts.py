"""Return values as artifacts: JSON for plain values, pickle otherwise, written atomically.

The artifact directory is a local path or an fsspec URL (``s3://bucket/conveyor/artifacts/RUN``):
a runner on another machine writes its results where the scheduler and the next tasks read them.
A reference is then the object's full URL; on an object store one PUT makes it whole at once.
"""

from __future__ import annotations

import json
import os
import pickle
import re
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


#: ``proto:/rest`` or ``proto://rest``: a URL, perhaps with its ``//`` folded by ``pathlib``.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/+(.*)$", re.DOTALL)


def _where(location: str | os.PathLike[str]) -> Path | str:
    """A local path, or the fsspec URL of a remote location (``Path("s3://b/x")`` reads
    ``s3:/b/x``: the URL is put back together)."""
    text = os.fspath(location)
    m = _URL.match(text)
    if m is None:
        return Path(text)
    protocol, rest = m.groups()
    if protocol == "file" or protocol == "local":
        return Path("/" + rest)
    return f"{protocol}://{rest}"


def save(value: Any, directory: str | os.PathLike[str], name: str) -> str | None:
    """Store ``value`` in ``directory`` (a path or an fsspec URL); return its reference, or
    None for ``None`` (nothing to store)."""
    if value is None:
        return None
    data, suffix = _encode(value)
    where = _where(directory)
    if isinstance(where, str):
        return _save_remote(where, f"{name}{suffix}", data)
    where.mkdir(parents=True, exist_ok=True)
    path = where / f"{name}{suffix}"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return str(path)


def _save_remote(url: str, name: str, data: bytes) -> str:
    from conveyor.targets import objects

    with objects.reaching(url, "saving the return value to"):
        fs, root = objects.filesystem(url)
        fs.makedirs(root, exist_ok=True)  # a no-op on object stores; a local directory needs it
        fs.pipe_file(f"{root}/{name}", data)
        return str(fs.unstrip_protocol(f"{root}/{name}"))


def _encode(value: Any) -> tuple[bytes, str]:
    if _plain(value):
        return json.dumps(value).encode(), ".json"
    else:
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise ConveyorError(
                f"the return value ({type(value).__name__}) cannot be pickled: {exc}; return a "
                "plain value, or write it to an output target instead"
            ) from None
        return data, ".pkl"


def load(ref: str | None) -> Any:
    """The value behind a reference from ``save``."""
    if ref is None:
        return None
    where = _where(ref)
    try:
        if isinstance(where, str):
            data = _load_remote(where)
        else:
            with open(where, "rb") as f:
                data = f.read()
    except FileNotFoundError:
        raise ConveyorError(
            f"the artifact {ref} is missing; re-run the task that produced it (conveyor run --force)"
        ) from None
    return json.loads(data) if ref.endswith(".json") else pickle.loads(data)


def _load_remote(url: str) -> bytes:
    from conveyor.targets import objects

    fs, path = objects.filesystem(url)
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise objects.failed(url, exc, "loading the artifact") from None
