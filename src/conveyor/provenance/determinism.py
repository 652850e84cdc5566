"""Deterministic by default: what the runner sets up before a task runs, so that a re-run of the
same code on the same inputs writes the same bytes.

- ``SOURCE_DATE_EPOCH`` is the run's commit time (the reproducible-builds convention that
  matplotlib, docutils, Sphinx, zip and tar tools honour), and ``PYTHONHASHSEED`` is fixed for
  the processes a task starts (scripts, shell commands). A worker already running keeps its own
  hash seed: Python reads it once, at start.
- matplotlib, whenever it is imported, saves figures without the metadata that changes from run
  to run or from version to version (PNG ``Software``, PDF ``CreationDate``, SVG ``Date``;
  PostScript takes its date from ``SOURCE_DATE_EPOCH``) and with a fixed ``svg.hashsalt``
  (else SVG element ids are random). A task that passes ``metadata=`` keeps what it passes.
- ``conveyor.seed()`` gives each task instance a seed derived from its run's parameters and its
  own identity, and seeds ``random`` (and numpy's global generator when numpy is installed).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import json
import os
import random
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

#: The hash seed given to the processes tasks start.
HASH_SEED = "0"
#: SVG ids are hashed with this salt (matplotlib's ``svg.hashsalt``).
SVG_SALT = "conveyor"
#: Per format, the metadata matplotlib writes by default that differs between runs or versions.
STRIPPED: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "pdf": {"CreationDate": None, "Producer": None, "Creator": None},
    "svg": {"Date": None, "Creator": None},
}


@dataclass(frozen=True, slots=True)
class Context:
    """The running attempt's identity, as ``seed()`` needs it."""

    params: Mapping[str, Any]
    instance: str


_current: Context | None = None


def enter(params: Mapping[str, Any], instance: str, source_date_epoch: float | None) -> None:
    """Set up this worker for an attempt of ``instance`` in a run with ``params``."""
    global _current
    _current = Context(params, instance)
    os.environ["PYTHONHASHSEED"] = HASH_SEED
    if source_date_epoch is not None:
        os.environ["SOURCE_DATE_EPOCH"] = str(int(source_date_epoch))
    else:  # not from a git working copy: no commit time, and not the last run's either
        os.environ.pop("SOURCE_DATE_EPOCH", None)
    watch_matplotlib()


def seed() -> int:
    """This task's random seed: the same for the same run parameters and task instance (so a
    re-run draws the same numbers), different between instances. Seeds ``random`` and numpy's
    global generator too, so calling it first thing in a task is enough. Outside a run (a task
    called as a plain function) the seed is that of no parameters."""
    ctx = _current or Context({}, "")
    text = json.dumps({"params": ctx.params, "instance": ctx.instance}, sort_keys=True, default=str)
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    random.seed(value)
    try:
        import numpy
    except ImportError:
        return value
    numpy.random.seed(value)
    return value


# -- matplotlib ------------------------------------------------------------------------------
def watch_matplotlib() -> None:
    """Make matplotlib deterministic now if it is imported, else as soon as it is."""
    figure = sys.modules.get("matplotlib.figure")
    if figure is not None:
        _patch(figure)
    elif not any(isinstance(f, _Watch) for f in sys.meta_path):
        sys.meta_path.insert(0, _Watch())


def _patch(figure: ModuleType) -> None:
    import matplotlib

    if matplotlib.rcParams.get("svg.hashsalt") is None:
        matplotlib.rcParams["svg.hashsalt"] = SVG_SALT
    cls = figure.Figure
    if getattr(cls.savefig, "_conveyor", False):
        return
    original = cls.savefig

    def savefig(self: Any, fname: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("metadata") is None:
            fmt = kwargs.get("format") or _suffix(fname) or matplotlib.rcParams.get("savefig.format")
            stripped = STRIPPED.get(str(fmt).lower())
            if stripped:
                kwargs["metadata"] = dict(stripped)
        return original(self, fname, *args, **kwargs)

    savefig._conveyor = True  # type: ignore[attr-defined]
    savefig.__doc__ = original.__doc__
    cls.savefig = savefig


def _suffix(fname: Any) -> str | None:
    try:
        name = os.fspath(fname)
    except TypeError:
        return None  # a file object: the format comes from format= or rcParams
    ext = os.path.splitext(name if isinstance(name, str) else name.decode())[1]
    return ext[1:] or None


class _Watch(importlib.abc.MetaPathFinder):
    """Patches ``matplotlib.figure`` right after it is first imported."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname != "matplotlib.figure":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Patching(spec.loader)
        return spec


class _Patching(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        made: ModuleType | None = self._loader.create_module(spec)
        return made

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _patch(module)
