"""Fingerprints of what a run depends on: the installed environment, a file's content, a
function's code.

Three small hashes that the run record and the result cache (``conveyor.cache``) share. They
must be stable across processes and machines (no ``id()``, no absolute paths in a code hash), and
cheap enough to take once per run.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import types
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Lock files, in the order they are preferred: the first found is the environment's identity.
LOCK_FILES = (
    "uv.lock",
    "poetry.lock",
    "pdm.lock",
    "Pipfile.lock",
    "conda-lock.yml",
    "requirements.lock",
    "requirements.txt",
)

#: Plain values a function may read from its module: part of its code hash when it uses them.
_PLAIN = (int, float, str, bytes, bool, type(None), tuple, frozenset)


def environment_hash(root: Path) -> tuple[str, str]:
    """The environment's identity: the SHA-256 of the project's lock file (kind ``lock:<file>``)
    when it has one, else of the installed distributions' names and versions (kind
    ``distributions``). A lock file says what was meant; the distributions what is there."""
    for name in LOCK_FILES:
        path = root / name
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest(), f"lock:{name}"
    return _distributions(), "distributions"


@lru_cache(maxsize=1)
def _distributions() -> str:
    """The installed distributions' names and versions, as their ``*.dist-info`` (and
    ``*.egg-info``) folders on ``sys.path`` name them (``numpy-2.1.0.dist-info``): listing the
    folders takes milliseconds where reading every distribution's metadata takes seconds. Once
    per process: a process does not install packages under its own feet."""
    names: set[str] = set()
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as it:
                names.update(e.name.lower() for e in it if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
    version = ".".join(str(n) for n in sys.version_info[:3])
    text = f"python {version}\n" + "\n".join(sorted(names))
    return hashlib.sha256(text.encode()).hexdigest()


def file_fingerprint(path: str) -> dict[str, Any]:
    """What a file (or a folder) holds: ``{"path", "size", "sha256"}``. An fsspec URL's content
    is not downloaded: its store's checksum (an ETag, an md5) stands in for ``sha256`` when it
    has one, else only the size is known (``sha256`` None)."""
    if "://" in path and not path.startswith("file://"):
        return _remote(path)
    local = Path(path.removeprefix("file://"))
    if local.is_dir():
        digest, size = hashlib.sha256(), 0
        for f in sorted(p for p in local.rglob("*") if p.is_file()):
            digest.update(f.relative_to(local).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                digest.update(hashlib.file_digest(fh, "sha256").digest())
            size += f.stat().st_size
        return {"path": path, "size": size, "sha256": digest.hexdigest()}
    with open(local, "rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    return {"path": path, "size": local.stat().st_size, "sha256": sha}


def _remote(url: str) -> dict[str, Any]:
    import fsspec

    fs, where = fsspec.core.url_to_fs(url)
    info = fs.info(where)
    checksum = None
    for key in ("ETag", "etag", "md5", "md5Hash", "crc32c", "checksum"):
        if info.get(key):
            checksum = str(info[key]).strip('"')
            break
    return {"path": url, "size": int(info.get("size") or 0), "sha256": checksum}


def code_hash(fn: Callable[..., Any], root: Path) -> str:
    """The SHA-256 of ``fn``'s source and of what it calls inside the project (functions and
    classes it names whose source lies under ``root``, followed recursively), and of the plain
    values it reads from its module. A helper the task calls, edited, changes the hash; a
    library it imports does not (the environment hash sees those)."""
    root = root.resolve()
    digest = hashlib.sha256()
    seen: set[int] = set()
    todo: list[Any] = [inspect.unwrap(fn)]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        digest.update(_source(obj).encode() + b"\0")
        for name, value in sorted(_globals_used(obj).items()):
            if isinstance(value, _PLAIN):
                digest.update(f"{name}={value!r}\0".encode())
            elif _inside(value, root):
                todo.append(value)
    return digest.hexdigest()


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):  # defined in a REPL or built in: its name stands in
        return f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', repr(obj))}"


def _globals_used(obj: Any) -> dict[str, Any]:
    """The module-level names ``obj``'s code reads (a class: its methods' too), with their values."""
    if isinstance(obj, type):
        found: dict[str, Any] = {}
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)
            if isinstance(member, types.FunctionType):
                found.update(_globals_used(member))
        return found
    fn = inspect.unwrap(obj)
    code = getattr(fn, "__code__", None)
    if code is None:
        return {}
    names: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    scope = getattr(fn, "__globals__", {})
    return {n: scope[n] for n in names if n in scope and not isinstance(scope[n], types.ModuleType)}


def _inside(value: Any, root: Path) -> bool:
    """Is ``value`` a function or class whose source file lies under ``root``?"""
    value = getattr(value, "fn", value)  # a task definition: its function
    if not isinstance(value, (types.FunctionType, type)):
        return False
    try:
        source = inspect.getsourcefile(value)
    except TypeError:
        return False
    if source is None:
        return False
    try:
        return Path(source).resolve().is_relative_to(root) and ".venv" not in Path(source).parts
    except OSError:
        return False
