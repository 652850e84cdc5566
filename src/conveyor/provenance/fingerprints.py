"""Content hashes the run record and the result cache share: of the installed environment, of a
file (local or through fsspec), and of a task function's code.

They are the one definition of "the same" in Conveyor: a run's record keeps them, ``conveyor
reproduce`` compares against them and the cache keys on them, so each is computed here and
nowhere else. Each is a SHA-256 hex digest, stable across processes and machines (no ``hash()``,
no addresses, no timestamps).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Lock files that pin a whole environment, in the order they are preferred.
LOCK_FILES = ("uv.lock", "pylock.toml", "poetry.lock", "pdm.lock", "Pipfile.lock")


def environment_hash(root: Path) -> tuple[str, str]:
    """The environment's hash and how it was taken: ``"lock:<file>"`` when the project at
    ``root`` (or a folder above it, up to its git root) has a lock file, else
    ``"distributions"``: the sorted ``name==version`` of every installed distribution. A lock
    file says what was meant to be installed; the distributions what is."""
    lock = _lock_file(Path(root).absolute())
    if lock is not None:
        return _sha(lock.read_bytes()), f"lock:{lock.name}"
    return _distributions_hash(tuple(sys.path)), "distributions"


def _lock_file(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        for name in LOCK_FILES:
            if (folder / name).is_file():
                return folder / name
        pinned = sorted(folder.glob("requirements*.txt"))
        hashed = [p for p in pinned if "--hash=" in p.read_text(errors="replace")]
        if hashed:  # pip-compile --generate-hashes: a lock in all but name
            return hashed[0]
        if (folder / ".git").exists() or (folder / "conveyor.toml").is_file():
            return None  # the project's root: a lock file above it is another project's
    return None


@functools.lru_cache(maxsize=4)
def _distributions_hash(path: tuple[str, ...]) -> str:
    """Cached per ``sys.path``. Read from the names of the ``.dist-info`` folders (``name-version``,
    as installers write them) rather than from each ``METADATA``: parsing a hundred of those
    costs seconds, listing the folders milliseconds; an ``.egg-info`` without a version in its
    name gives it on a line of its ``PKG-INFO``."""
    seen: dict[str, str] = {}
    for entry in path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            found = _distribution(Path(entry or ".", name))
            if found is not None:
                seen.setdefault(*found)  # the first on the path is the one imported
    return _sha("\n".join(f"{n}=={v}" for n, v in sorted(seen.items())).encode())


def _distribution(folder: Path) -> tuple[str, str] | None:
    name = folder.name
    if name.endswith(".dist-info"):
        dist, _, version = name.removesuffix(".dist-info").partition("-")
    elif name.endswith(".egg-info"):
        dist, _, version = name.removesuffix(".egg-info").partition("-")
        version = version.split("-py", 1)[0]
        if not version:
            version = _pkg_info_version(folder)
    else:
        return None
    return dist.lower().replace("_", "-").replace(".", "-"), version


def _pkg_info_version(folder: Path) -> str:
    info = folder / "PKG-INFO" if folder.is_dir() else folder
    try:
        with open(info, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip()
                if not line.strip():
                    break
    except OSError:
        pass
    return ""


def file_fingerprint(path: str) -> dict[str, Any]:
    """What a file holds: ``{"path", "size", "sha256"}``. A local file (or directory: a hash
    over its files' relative names and contents) is read and hashed; an fsspec URL gives what its
    store knows without downloading: its checksum (``sha256`` when the store reports an MD5 or
    ETag it is ``"<kind>:<value>"``), or None when it has none."""
    from conveyor.artifacts import _where

    where = _where(path)
    if isinstance(where, Path):
        return _local(where, path)
    from conveyor.targets import objects

    fs, inner = objects.filesystem(where)
    with objects.reaching(where):
        info = fs.info(inner)
    checksum = None
    for key in ("sha256", "ChecksumSHA256", "md5", "ETag", "etag", "checksum", "crc32c"):
        value = info.get(key)
        if value:
            checksum = (
                str(value).strip('"') if key == "sha256" else f"{key.lower()}:{str(value).strip(chr(34))}"
            )
            break
    return {"path": path, "size": int(info.get("size") or 0), "sha256": checksum}


def _local(root: Path, path: str) -> dict[str, Any]:
    """What the run record keeps of a target's files, under the names asked for here."""
    from conveyor.targets.files import FileTarget, fingerprint

    held = fingerprint(FileTarget(str(root)))
    return {"path": path, "size": held["size"], "sha256": held["sha256"]}


def code_hash(fn: Callable[..., Any], root: Path) -> str:
    """A hash of ``fn``'s source and of the source of every function or class it names that is
    defined in a file under ``root`` (followed transitively): editing a helper the task calls
    changes its hash, editing an unrelated one or a library does not. Functions whose source
    cannot be read (built-ins, C extensions) count by their qualified name."""
    root = Path(root).absolute()
    digest = hashlib.sha256()
    seen: set[int] = set()
    todo: list[Any] = [inspect.unwrap(getattr(fn, "fn", fn))]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        source = _source(obj)
        # the qualified name, not the module's: a pipeline loaded from a file gets a module name
        # from its path, and the same code in another checkout must hash the same
        digest.update(f"{getattr(obj, '__qualname__', '')}\0".encode())
        digest.update((source or "").encode() + b"\0")
        if source is not None:
            todo.extend(_called_in_project(obj, source, root))
    return digest.hexdigest()


def _source(obj: Any) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        return None


def _called_in_project(obj: Any, source: str, root: Path) -> list[Any]:
    """The functions and classes ``obj``'s source names (``f``, ``mod.f``) that live under ``root``."""
    scope = dict(getattr(obj, "__globals__", None) or vars(sys.modules.get(obj.__module__, object())))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found: list[Any] = []
    for node in ast.walk(tree):
        value: Any = None
        if isinstance(node, ast.Name):
            value = scope.get(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            value = getattr(scope.get(node.value.id), node.attr, None)
        value = getattr(value, "fn", value)  # a TaskDef called from a task: its function
        if (inspect.isfunction(value) or inspect.isclass(value)) and _inside(value, root):
            found.append(value)
    return found


def _inside(obj: Any, root: Path) -> bool:
    try:
        where = inspect.getsourcefile(obj)
    except TypeError:
        return False
    if not where:
        return False
    path = os.path.abspath(where)
    return path.startswith(str(root) + os.sep) and f"{os.sep}site-packages{os.sep}" not in path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
