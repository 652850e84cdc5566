"""Targets: output locations whose existence means "done".

``FileTarget`` (``files``) is a local path or any fsspec URL, written under a temporary name and
moved into place only when complete. ``TableTarget`` (``tables``) is a partition of a database
table, written in one transaction with a marker row, so "done" means the rows are there exactly
once. ``done_among`` decides which of many targets exist with one query or listing per store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from conveyor.targets.base import DIRECT, Output, Writer
from conveyor.targets.files import FileTarget
from conveyor.targets.tables import TableTarget

__all__ = [
    "DIRECT",
    "FileTarget",
    "Output",
    "TableTarget",
    "Target",
    "Writer",
    "done_among",
    "flatten",
    "rebuild",
]


@runtime_checkable
class Target(Protocol):
    """Anything whose existence says a task's work is done."""

    def exists(self) -> bool: ...


def flatten(output: Any) -> list[Output]:
    """The targets inside a task's output: one target, a list or a dict of them."""
    if output is None:
        return []
    if isinstance(output, Output):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in flatten(v)]
    if isinstance(output, list | tuple):
        return [t for v in output for t in flatten(v)]
    return []


def rebuild(output: Any, targets: list[Any]) -> Any:
    """``output``'s shape (one, list or dict) filled with ``targets`` in order."""
    it = iter(targets)

    def walk(o: Any) -> Any:
        if isinstance(o, Output):
            return next(it)
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return type(o)(walk(v) for v in o)
        return o

    return walk(output)


def done_among(targets: Iterable[Output]) -> set[Output]:
    """Which of ``targets`` exist: one query per database, one listing per object-store
    folder, rather than one call per target (a year of daily partitions is one query)."""
    groups: dict[tuple[type[Output], Any], list[Output]] = {}
    out: set[Output] = set()
    for t in targets:
        key = t.bulk_key()
        if key is None:
            if t.exists():
                out.add(t)
        else:
            groups.setdefault((type(t), key), []).append(t)
    for (cls, _), group in groups.items():
        out |= cls.done_among(group)
    return out
