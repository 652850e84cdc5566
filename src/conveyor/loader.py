"""Loading a pipeline from ``path/to/file.py:name`` or ``package.module:name``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

from conveyor.errors import ConveyorError, LoadError
from conveyor.pipelines import PipelineDef


def split_target(target: str) -> tuple[str, str | None]:
    where, sep, name = target.rpartition(":")
    if not sep or (len(where) == 1 and where.isalpha()):  # no name, or a Windows drive letter
        return target, None
    return where, name or None


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or Path(where).suffix == ".py"


def _file_module(path: Path) -> str:
    """The module name of a pipeline file: the same in every process (so that objects of its
    classes unpickle anywhere), different for two files of the same name."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return f"conveyor_user_{path.stem}_{digest}"


def forget(where: str) -> None:
    """Drop a loaded file or module, so that the next load imports its code anew (a reload).
    A package's modules under it are dropped too."""
    name = _file_module(Path(where).resolve()) if _is_file(where) else where
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    importlib.invalidate_caches()


def load_module(where: str) -> object:
    """Import a module from a file path or a dotted module name."""
    if _is_file(where):
        path = Path(where).resolve()
        if not path.is_file():
            raise LoadError(f"pipeline file {where} does not exist")
        modname = _file_module(path)
        if modname in sys.modules:
            return sys.modules[modname]
        spec = importlib.util.spec_from_file_location(modname, path)
        if spec is None or spec.loader is None:
            raise LoadError(f"cannot import {where}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        if str(path.parent) not in sys.path:  # let the file import its neighbours
            sys.path.insert(0, str(path.parent))
        loader = spec.loader
        _exec(lambda: loader.exec_module(module), where)
        return module
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    return _exec(lambda: importlib.import_module(where), where)


def _exec(fn: object, where: str) -> object:
    try:
        return fn()  # type: ignore[operator]
    except ConveyorError as exc:
        raise type(exc)(f"{exc} (in {where})") from None
    except ModuleNotFoundError as exc:
        if exc.name and where.startswith(exc.name):
            raise LoadError(f"no module named {where}; give a file path or an importable module") from None
        raise LoadError(f"importing {where} failed: {exc}") from None
    except Exception as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        place = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
        raise LoadError(f"importing {where} failed{place}: {type(exc).__name__}: {exc}") from None


def load_pipeline(target: str) -> PipelineDef:
    """The ``PipelineDef`` named by ``target``; with no ``:name``, the module's only pipeline.
    ``luigi:MODULE.TaskClass``: a Luigi task class and all it requires (``conveyor.luigi``)."""
    if target.startswith("luigi:"):
        from conveyor.luigi import load

        return load(target.removeprefix("luigi:"))
    where, name = split_target(target)
    module = load_module(where)
    found = {v.name: v for v in vars(module).values() if isinstance(v, PipelineDef)}
    if name is None:
        if len(found) == 1:
            return next(iter(found.values()))
        listing = ", ".join(sorted(found)) or "none"
        raise LoadError(f"{where} defines pipelines: {listing}; name one as {where}:NAME")
    obj = getattr(module, name, None)
    if isinstance(obj, PipelineDef):
        return obj
    if name in found:
        return found[name]
    listing = ", ".join(sorted(found)) or "none"
    raise LoadError(f"{where} has no pipeline {name!r}; it defines: {listing}")
