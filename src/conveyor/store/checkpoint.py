"""Checkpoints of SQLite's write-ahead log, on a thread of their own (see ``Checkpointer``)."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Protocol


class Connects(Protocol):
    """What opens a connection of the checkpointer's own: an SQLAlchemy ``Engine``, or ``lite``'s store."""

    def raw_connection(self) -> Any: ...


class Checkpointer:
    """Copies SQLite's write-ahead log into the database file on a thread of its own.

    SQLite does it inside a commit once the log has grown by 1,000 pages: copying the pages and
    waiting for the disk (fsync) then stalls the driver for milliseconds. Here a passive
    checkpoint, which never blocks a writer, runs after every few commits, so when a commit's
    own checkpoint comes due it finds most pages copied already. Durability is unchanged: in
    WAL mode with synchronous=NORMAL a commit is safe from a crash of any process once written
    to the log; only a power cut loses the commits since the last checkpoint.

    The thread ends when the store has been idle a while, and a fork waits until no checkpoint
    is under way (a child must not inherit SQLite's locks held by it).
    """

    EVERY = 16  # commits
    IDLE = 2.0  # seconds

    def __init__(self, engine: Connects) -> None:
        self._engine = engine
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _thread and _stopping
        self.busy = threading.Lock()  # held while a checkpoint runs
        self._stopping = False
        self._commits = 0
        self._thread: threading.Thread | None = None
        _CHECKPOINTERS.add(self)

    def committed(self) -> None:
        self._commits += 1
        if self._commits < self.EVERY:
            return
        self._commits = 0
        with self._lock:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="conveyor-checkpoint", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        raw = self._engine.raw_connection()
        try:
            while True:
                woke = self._wake.wait(self.IDLE)
                with self._lock:
                    if self._stopping or not woke:
                        self._thread = None
                        return
                    self._wake.clear()
                with self.busy:
                    try:
                        raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    except Exception:  # busy or closing: the backstop checkpoint remains
                        pass
        finally:
            raw.close()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        _CHECKPOINTERS.discard(self)


_CHECKPOINTERS: weakref.WeakSet[Checkpointer] = weakref.WeakSet()
_FORKING: list[Checkpointer] = []


def _before_fork() -> None:
    _FORKING[:] = list(_CHECKPOINTERS)
    for c in _FORKING:
        c.busy.acquire()


def _after_fork_in_parent() -> None:
    for c in _FORKING:
        c.busy.release()
    _FORKING.clear()


def _after_fork_in_child() -> None:
    for c in _FORKING:
        c._stopping, c._thread = True, None  # no thread came along: this copy never checkpoints
        c.busy = threading.Lock()  # the parent's was held across the fork: a fresh one, free
        _CHECKPOINTERS.discard(c)  # so that the child's own forks do not wait for it
    _FORKING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
