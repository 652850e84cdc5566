"""Attempts' log files: written up to a limit, read a bounded piece at a time, pruned.

- ``AttemptLog``: the runner's sink for an attempt's stdout, stderr and logging. It keeps at
  most the log limit (``limits``: 100 MiB unless set), then writes one marker line and drops the
  rest while the task goes on. ``fileno()`` is a pipe whose bytes go through the same limit, so
  a script's or a shell command's output is cut too.
- ``write_at``: a chunk a runner on another machine sent (the execution API), under the same
  limit.
- ``chunk`` and ``end``: what the server reads: a followed log in chunks of ``CHUNK`` bytes,
  and the end of a log (its last lines, within a byte budget, a cut marked).
- ``prune``: delete the log files of runs that ended before a time.
"""

from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor import limits
from conveyor.errors import LoadError

if TYPE_CHECKING:
    from conveyor.store import Store

#: Bytes read at once: a followed log is sent in pieces of this size.
CHUNK = 64 * 1024

#: Bytes a sink buffers before it writes (it writes at once at the end of a line).
BUFFER = 8 * 1024

#: The last bytes a sink keeps in memory: a failed command's error quotes its last lines.
RECENT = 4000


def cut_marker(limit: int) -> bytes:
    """The line that ends a log cut at ``limit`` bytes."""
    return f"[conveyor: log cut at {limits.human(limit)}; the task went on]\n".encode()


_limit_cache: dict[tuple[str, str], int] = {}


def log_limit(root: Path | None = None) -> int:
    """The log limit for attempts run in ``root`` (default: here): ``[logs] limit`` of its
    conveyor.toml, or ``CONVEYOR_LOG_LIMIT``; read once per folder and value of the variable."""
    where = str(root or Path.cwd())
    key = (where, os.environ.get("CONVEYOR_LOG_LIMIT", ""))
    found = _limit_cache.get(key)
    if found is None:
        try:
            found = limits.read(Path(where)).log_limit
        except LoadError:
            found = limits.LOG_LIMIT  # a bad setting is reported where the project is read
        if len(_limit_cache) > 64:
            _limit_cache.clear()
        _limit_cache[key] = found
    return found


class AttemptLog(io.TextIOBase):
    """A text sink for one attempt's log file, opened on its first write, holding at most
    ``limit`` bytes (default: ``log_limit()`` when it opens) and then the cut marker."""

    def __init__(self, path: str, limit: int | None = None) -> None:
        self.path = path
        self.limit = limit
        self.size = 0  # bytes in the file (what was there before, and what this sink kept)
        self.cut = False
        self.recent = b""  # the last bytes written to it, kept or not
        self._fd: int | None = None
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._pipe: int | None = None  # the write end ``fileno()`` gave out
        self._pump: threading.Thread | None = None

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        data = s.encode("utf-8", "backslashreplace")
        with self._lock:
            self._buf += data
            if b"\n" in data or len(self._buf) >= BUFFER:
                self._flush()
        return len(s)

    def write_bytes(self, data: bytes) -> None:
        """Bytes as they are (a command's output through the pipe), written at once."""
        with self._lock:
            self._buf += data
            self._flush()

    def flush(self) -> None:
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        """Write the buffer, up to the limit (with the lock held)."""
        if not self._buf:
            return
        data, self._buf = bytes(self._buf), bytearray()
        self.recent = (self.recent + data)[-RECENT:]
        if self.cut:
            return
        fd = self._open()
        assert self.limit is not None
        room = self.limit - self.size
        if len(data) <= room:
            _write_all(fd, data)
            self.size += len(data)
            return
        kept = data[: max(room, 0)]
        _write_all(fd, kept)
        self.size += len(kept)
        ends_line = kept.endswith(b"\n") or (not kept and self._ends_line(fd))
        marker = (b"" if ends_line else b"\n") + cut_marker(self.limit)
        _write_all(fd, marker)
        self.size += len(marker)
        self.cut = True

    def _ends_line(self, fd: int) -> bool:
        return self.size == 0 or os.pread(fd, 1, self.size - 1) == b"\n"

    def _open(self) -> int:
        if self._fd is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self.size = os.fstat(self._fd).st_size
            if self.limit is None:
                self.limit = log_limit()
            self.cut = self.size > self.limit
        return self._fd

    def fileno(self) -> int:
        """A pipe into this log (a child process's stdout and stderr): its bytes are written as
        they come, under the same limit. ``drain`` waits for its writers to finish."""
        if self._pipe is None:
            self.flush()
            read_end, self._pipe = os.pipe()
            self._pump = threading.Thread(
                target=self._drain_pipe, args=(read_end,), name="conveyor-log-pipe", daemon=True
            )
            self._pump.start()
        return self._pipe

    def _drain_pipe(self, read_end: int) -> None:
        try:
            while data := os.read(read_end, CHUNK):
                self.write_bytes(data)
        except OSError:
            pass
        finally:
            os.close(read_end)

    def drain(self, timeout: float = 5.0) -> None:
        """Close this end of the pipe and wait (``timeout`` seconds at most: a child's own child
        may hold it) until what its writers wrote is in the log."""
        pipe, pump = self._pipe, self._pump
        self._pipe = self._pump = None
        if pipe is not None:
            os.close(pipe)
        if pump is not None:
            pump.join(timeout)

    def last_lines(self, n: int = 5) -> list[str]:
        text = self.recent.decode("utf-8", "replace")
        return [line for line in text.splitlines() if line.strip()][-n:]

    def close(self) -> None:
        self.drain(1.0)
        if self._lock.acquire(timeout=1.0):  # a cancel may have landed while a write held it
            try:
                self._flush()
            finally:
                self._lock.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_at(path: str, offset: int, data: bytes, limit: int) -> int:
    """Write ``data`` at byte ``offset`` of the log at ``path`` (a chunk from a runner), keeping
    at most ``limit`` bytes and then the cut marker. Returns where the runner sends from next:
    past the chunk when it was taken (or dropped beyond the limit), else the file's size."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        end = offset + len(data)
        if size > limit:  # cut already: the rest is dropped, and the runner sends on
            return max(end, size)
        if offset > size or not data:
            return size
        if end <= limit:
            os.pwrite(fd, data, offset)
            return max(size, end)
        kept = data[: limit - offset]
        if kept:
            os.pwrite(fd, kept, offset)
        last = kept[-1:] if kept else (os.pread(fd, 1, limit - 1) if limit else b"\n")
        marker = (b"" if last == b"\n" else b"\n") + cut_marker(limit)
        os.pwrite(fd, marker, limit)
        os.ftruncate(fd, limit + len(marker))
        return end
    finally:
        os.close(fd)


# -- reading ---------------------------------------------------------------------------------------
def chunk(path: str, offset: int, size: int = CHUNK) -> bytes:
    """At most ``size`` bytes of the file from ``offset``; nothing if it is not there (yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    except OSError:
        return b""


@dataclass(frozen=True, slots=True)
class End:
    """The end of a log: its text and whether anything before it was left out."""

    text: str
    truncated: bool


def end(path: str | None, budget: int, lines: int | None = None) -> End:
    """The log's last ``lines`` lines (all its lines if None), within its last ``budget`` bytes.
    What the budget leaves out is said in a marker line at the start, or before the cut line."""
    if not path:
        return End("", False)
    try:
        f = open(path, "rb")  # noqa: SIM115
    except OSError:
        return End("", False)
    with f:
        size = f.seek(0, os.SEEK_END)
        floor = max(0, size - budget)
        pos, parts, newlines = size, [], 0
        while pos > floor:
            step = min(CHUNK, pos - floor)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            parts.append(block)
            newlines += block.count(b"\n")
            if lines is not None and newlines > lines:
                break
        data = b"".join(reversed(parts))
        start, trimmed = pos, False
        if lines is not None:
            kept = data.splitlines(keepends=True)
            if len(kept) > lines:  # the lines asked for fit in the budget: whole lines
                data = b"".join(kept[-lines:])
                start, trimmed = size - len(data), True
        whole_line = start == 0 or trimmed or _byte_at(f, start - 1) == b"\n"
    if not whole_line:  # the budget begins inside a line: from the next one, if it holds one
        newline = data.find(b"\n", 0, len(data) - 1)
        if newline >= 0:
            data, start, whole_line = data[newline + 1 :], start + newline + 1, True
    text = data.decode("utf-8", "replace")
    if start == 0 or trimmed:
        return End(text, start > 0)
    shown = limits.human(start)
    if whole_line:
        return End(f"[conveyor: the log's first {shown} are not shown]\n{text}", True)
    return End(f"[conveyor: line cut; the log's first {shown} are not shown] …{text}", True)


def _byte_at(f: io.BufferedReader, offset: int) -> bytes:
    f.seek(offset)
    return f.read(1)


# -- retention --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Pruned:
    runs: int
    files: int
    bytes: int


def prune(store: Store, before: float) -> Pruned:
    """Delete the attempt log files of the runs that ended before ``before`` (seconds since
    1970), and their folders once empty. A run's own folder (``logs/RUN``) goes whole: the logs
    of the worker processes its ``conveyor run`` started are in it too."""
    runs: set[str] = set()
    files = size = 0
    folders: dict[Path, str] = {}
    for run_id, path in store.ended_logs(before):
        p = Path(path)
        n = _unlink(p)
        if n is None:
            continue
        runs.add(run_id)
        files += 1
        size += n
        folders[p.parent] = run_id
    for folder, run_id in sorted(folders.items(), key=lambda f: len(f[0].parts), reverse=True):
        _rmdir(folder)  # the task's folder, when no other attempt's log is left in it
        if folder.parent.name == run_id:
            for worker in folder.parent.glob("worker-*.log"):
                n = _unlink(worker)
                if n is not None:
                    files, size = files + 1, size + n
            _rmdir(folder.parent)
    return Pruned(len(runs), files, size)


def _unlink(path: Path) -> int | None:
    """Delete a file; its size, or None if it was not there (or not ours to delete)."""
    try:
        n = path.stat().st_size
        path.unlink()
    except OSError:
        return None
    return n


def _rmdir(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: kept
