"""Whether a run uses the result cache, and the project it keys code against.

    # conveyor.toml
    [cache]
    enabled = false     # never reuse, never record          CONVEYOR_CACHE=0

The variable wins over the file; ``--no-cache`` (``conveyor run``) wins over both for one run.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from conveyor.errors import LoadError

FILE = "conveyor.toml"
_OFF = ("0", "false", "no", "off")
_ON = ("1", "true", "yes", "on")


def project_root(workdir: str | None) -> Path:
    """The project a run belongs to: the nearest folder up from ``workdir`` (else the current
    one) with a ``conveyor.toml`` or a ``.git``; else that folder itself. Code under it is the
    project's own (its edits change cache keys); code elsewhere is the environment's."""
    start = Path(workdir or os.getcwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / FILE).is_file() or (folder / ".git").exists():
            return folder
    return start


def enabled(root: Path) -> bool:
    """Does the project use the cache (``[cache] enabled``, default true)?"""
    env = os.environ.get("CONVEYOR_CACHE", "").strip().lower()
    if env in _OFF:
        return False
    if env in _ON:
        return True
    if env:
        raise LoadError(f"CONVEYOR_CACHE={env!r} is not a yes or a no; set it to 1 or 0")
    path = root / FILE
    if not path.is_file():
        return True
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LoadError(f"{path}: {exc}; fix the file") from None
    value = data.get("cache", {}).get("enabled", True)
    if not isinstance(value, bool):
        raise LoadError(f"{path}: [cache] enabled = {value!r} must be true or false")
    return value
