"""Targets: output locations whose existence means "done".

``FileTarget`` is a local path or any fsspec URL. Writes are atomic: data goes to a temporary
name beside the final one and is renamed into place only when complete, so a crashed task never
leaves a half-written target that counts as done. A remote target (``s3://``, ``gs://``, ...) is
written to a local staging copy and uploaded only when complete (``objects``). Inside a running
task, ``conveyor.output()`` hands out *staged* targets (temporary names, local paths) that the
runner moves into place after the task returns successfully; a library that wants a path
(``savefig``, ``sqlite3.connect``) can use ``target.path`` directly.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from conveyor.errors import TargetError
from conveyor.targets import objects
from conveyor.targets.base import DIRECT, NotWritten, Output, Writer


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


class FileTarget(Output):
    """A file (or directory) at a local path or an fsspec URL."""

    __slots__ = ("_staged", "url")

    def __init__(self, url: str | os.PathLike[str], *, _staged: bool = False) -> None:
        url = os.fspath(url)
        if not url:
            raise TargetError("a FileTarget needs a path or URL, got an empty string")
        self.url = url.removeprefix("file://") if url.startswith("file://") else url
        self._staged = _staged

    # -- identity ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"FileTarget({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileTarget) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FileTarget, (self.url,), {"_staged": self._staged})

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # slots pickle protocol: (dict, slots)
            state = state[1] or {}
        self._staged = state.get("_staged", False)

    # -- paths ------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return _is_local(self.url)

    @property
    def path(self) -> str:
        """The local path, or the URL for a remote target."""
        return self.url

    def __fspath__(self) -> str:
        if not self.is_local:
            raise TypeError(f"{self.url} is remote; use target.open() instead of a local path")
        return self.url

    def describe(self) -> str:
        return self.url if self.is_local else objects.hide(self.url)

    def check(self) -> None:
        self.check_shared()

    def check_shared(self) -> None:
        """Raise unless every process can use this target: its store's fsspec package must be
        installed (``conveyor[s3]``, ...); and a task writes it in a worker process and the run
        reads it from others, so a filesystem each process keeps for itself (fsspec's
        ``memory://`` and its kind) would "succeed" and keep nothing."""
        if not self.is_local:
            objects.check(self.url)

    def _fs(self) -> tuple[Any, str]:
        return objects.filesystem(self.url)  # fsspec is imported only for remote targets

    # -- deciding which exist ---------------------------------------------------------------
    def bulk_key(self) -> tuple[str, str] | None:
        """Remote targets in one folder are decided together, by one listing of the folder."""
        if self.is_local:
            return None
        head, _, name = self.url.rstrip("/").rpartition("/")
        if not name or head.endswith(":/"):  # a whole bucket
            return None
        return (objects.protocol_of(self.url), head)

    @classmethod
    def done_among(cls, targets: Sequence[Output]) -> set[Output]:
        files = [t for t in targets if isinstance(t, FileTarget)]
        if not files or files[0].bulk_key() is None:
            return {t for t in files if t.exists()}
        folder = files[0].url.rstrip("/").rpartition("/")[0]
        fs, path = objects.filesystem(folder)
        with objects.reaching(objects.hide(folder), "listing the targets in"):
            keys = objects.listing(fs, path)
        return {t for t in files if objects.written(f"{path}/{t.url.rstrip('/').rpartition('/')[2]}", keys)}

    # -- reading and writing ----------------------------------------------------------------
    def exists(self) -> bool:
        """A local file or directory exists; a remote object exists, and a remote prefix (a
        directory target) exists only with its ``_SUCCESS`` object, written last."""
        if self.is_local:
            return os.path.exists(self.url)
        fs, path = self._fs()
        with objects.reaching(self.describe()):
            return objects.done(fs, path)

    def open(self, mode: str = "r", **kwargs: Any) -> IO[Any]:
        """Open for reading, or for an atomic write (``"w"``, ``"wb"``)."""
        if "x" in mode and self.exists():
            raise FileExistsError(f"target {self.url} exists already")
        if "a" in mode or "+" in mode:  # appending or updating in place cannot be atomic
            return self._open_direct(mode, **kwargs)
        writing = any(c in mode for c in "wx")
        if writing and not self._staged:
            return _AtomicFile(self, mode, kwargs)  # type: ignore[return-value]
        if not writing and not self.is_local:
            fs, path = self._fs()
            with objects.reaching(self.describe(), "reading target"):
                return fs.open(path, mode, **kwargs)  # type: ignore[no-any-return]
        return self._open_direct(mode, **kwargs)

    def _open_direct(self, mode: str, **kwargs: Any) -> IO[Any]:
        if self.is_local:
            if any(c in mode for c in "wax"):
                Path(self.url).parent.mkdir(parents=True, exist_ok=True)
            return open(self.url, mode, **kwargs)
        import fsspec

        return fsspec.open(self.url, mode, **kwargs).open()  # type: ignore[no-any-return]

    def read_text(self, encoding: str = "utf-8") -> str:
        with self.open("r", encoding=encoding) as f:
            return str(f.read())

    def read_bytes(self) -> bytes:
        with self.open("rb") as f:
            return bytes(f.read())

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        with self.open("w", encoding=encoding) as f:
            f.write(text)

    def write_bytes(self, data: bytes) -> None:
        with self.open("wb") as f:
            f.write(data)

    def remove(self) -> None:
        """Delete the target if it exists (a file or a directory tree)."""
        if self.is_local:
            p = Path(self.url)
            if p.is_dir():
                import shutil

                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
            return
        fs, path = self._fs()
        if fs.exists(path):
            fs.rm(path, recursive=True)

    # -- staging ----------------------------------------------------------------------------
    def temporary(self) -> FileTarget:
        """A staged sibling with a temporary name, in a directory that exists; ``commit_to``
        renames it into place."""
        head, _, name = self.url.rpartition("/")
        stem, dot, suffix = name.rpartition(".")
        if not stem:  # no suffix, or a dot file
            stem, dot, suffix = name, "", ""
        tmp = f".{stem}.tmp-{uuid.uuid4().hex[:12]}{dot}{suffix}"  # keeps the suffix: savefig needs it
        if head and self.is_local:
            os.makedirs(head, exist_ok=True)
        return FileTarget(f"{head}/{tmp}" if head else tmp, _staged=True)

    def commit_to(self, final: FileTarget) -> None:
        """Rename this staged target to ``final`` (atomic on one local file system)."""
        if self.is_local:
            Path(final.url).parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(self.url, final.url)
            except OSError as exc:
                raise TargetError(f"could not move {self.url} into place as {final.url}: {exc}") from None
            return
        fs, path = self._fs()
        _, final_path = final._fs()
        fs.mv(path, final_path, recursive=True)

    def discard(self) -> None:
        """Remove a staged target that will not be committed."""
        try:
            self.remove()
        except OSError:
            pass

    # -- the runner's part ------------------------------------------------------------------
    def stage(self, *, replace: bool = False) -> FileTarget:
        """A temporary sibling; for a remote target, a local path (in a staging directory of
        its own) that ``finish`` uploads."""
        if self.is_local:
            return self.temporary()
        name = self.url.rstrip("/").rpartition("/")[2]
        return FileTarget(objects.staging(name), _staged=True)

    def finish(self, staged: FileTarget, writer: Writer) -> dict[str, Any] | None:
        if not self.is_local and staged.is_local:
            try:
                if os.path.lexists(staged.url):
                    written = {**fingerprint(staged), "target": self.describe()}  # a hash of the content
                    fs, path = self._fs()
                    with objects.reaching(self.describe(), "uploading target"):
                        objects.upload(staged.url, fs, path)
                    return written
            finally:
                objects.drop(staged.url)
        elif staged.exists():
            staged.commit_to(self)
        if not self.exists():  # the task may have written the final path itself
            raise NotWritten(
                f"returned but did not write its target {self.url}; write it through "
                "conveyor.output() (or the path you were given)"
            )
        return fingerprint(self)

    def abandon(self, staged: FileTarget) -> None:
        staged.discard()
        if not self.is_local and staged.is_local:
            objects.drop(staged.url)


def fingerprint(target: FileTarget) -> dict[str, Any]:
    """What a file target holds: its size and SHA-256 (a directory: its files' total size and
    a hash over their relative names and contents)."""
    import hashlib

    if not target.is_local:  # written by the task itself, not staged: what the store says
        fs, path = target._fs()
        with objects.reaching(target.describe()):
            info = fs.info(path)
        kind = "directory" if info.get("type") == "directory" else "file"
        return {"kind": kind, "target": target.describe(), "size": int(info.get("size") or 0)}
    root = Path(target.url)
    if not root.is_dir():
        with open(root, "rb") as fh:
            sha = hashlib.file_digest(fh, "sha256").hexdigest()
        return {"kind": "file", "target": target.url, "size": root.stat().st_size, "sha256": sha}
    digest = hashlib.sha256()
    size = 0
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
        size += f.stat().st_size
    return {"kind": "directory", "target": target.url, "size": size, "sha256": digest.hexdigest()}


class _AtomicFile:
    """A file opened for writing under a temporary name, renamed into place on a clean close
    (a remote target: written locally, uploaded on a clean close)."""

    def __init__(self, target: FileTarget, mode: str, kwargs: dict[str, Any]) -> None:
        self._target = target
        self._tmp = target.stage()
        self._file = self._tmp._open_direct(mode, **kwargs)
        self._done = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __iter__(self) -> Any:
        return iter(self._file)

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        self._file.close()
        if self._target.is_local:
            self._tmp.commit_to(self._target)
        else:
            self._target.finish(self._tmp, DIRECT)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._file.close()
        self._target.abandon(self._tmp)
