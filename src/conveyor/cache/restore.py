"""Putting a cache entry's outputs where a new run expects them.

The cache keeps no copies: an entry says where its attempt wrote each target and what it held.
When the new run's target is another path (a checkout elsewhere), the recorded file is copied
there under a temporary name and renamed into place, only if it still holds the recorded
content. Copied, not hard-linked: a task that later rewrites its target in place (opening the
final path itself) would otherwise change the first run's file too. A result artifact is reused by
reference: it is read where the first run saved it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from conveyor import artifacts
from conveyor.graph import Node
from conveyor.store.cache import CacheEntry
from conveyor.targets import FileTarget, flatten
from conveyor.targets.files import fingerprint


def restore(node: Node, entry: CacheEntry, *, in_place: bool = False, base: str = "") -> bool:
    """Make ``node``'s targets hold ``entry``'s outputs, and check its result is still there.
    False (nothing changed where it matters) if they cannot be had: the instance executes.
    ``in_place``: its targets are known to hold them already. ``base``: the run's folder, where
    relative target paths start (its runners' working folder, not necessarily this process's)."""
    if entry.result is not None and not _present(entry.result):
        return False
    targets = flatten(node.output) if node.output is not None else []
    if len(targets) != len(entry.outputs):
        return False
    moves: list[tuple[Path, Path]] = []
    for target, recorded in zip(targets, entry.outputs, strict=True):
        assert isinstance(target, FileTarget)
        dest = Path(base, target.url)
        if dest.exists():
            if not in_place and fingerprint(FileTarget(str(dest))).get("sha256") != recorded.get("sha256"):
                return False
            continue
        source = Path(str(recorded.get("target", "")))
        if not source.exists() or not _holds(source, recorded):
            return False
        moves.append((source, dest))
    for source, dest in moves:
        _place(source, dest)
    return True


def _holds(path: Path, recorded: dict[str, Any]) -> bool:
    sha = recorded.get("sha256")
    return bool(sha) and fingerprint(FileTarget(str(path))).get("sha256") == sha


def _place(source: Path, dest: Path) -> None:
    """``source``'s content at ``dest``, atomically: a copy renamed into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.cache-{uuid.uuid4().hex[:12]}")
    if source.is_dir():
        shutil.copytree(source, tmp)
    else:
        shutil.copy2(source, tmp)
    os.replace(tmp, dest)


def _present(ref: str) -> bool:
    where = artifacts._where(ref)
    if isinstance(where, Path):
        return where.exists()
    from conveyor.targets import objects

    try:
        fs, path = objects.filesystem(where)
        return bool(fs.exists(path))
    except Exception:
        return False
