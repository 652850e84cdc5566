"""The store's connections: a raw DBAPI transaction for the hot path, SQLite's settings.

SQLAlchemy is imported where it is used: the embedded run's store (``lite``) uses this module
without it."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.store.sql import SqlStore


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    if url.startswith("sqlite:"):
        return url  # no password; and ``conveyor run`` does not import SQLAlchemy (``lite``)
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError as SAArgumentError

    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except SAArgumentError:
        return url


def failure(url: str, msg: str) -> str:
    """A store's error as one line: what went wrong, and for a damaged SQLite file what to do."""
    line = f"store {safe_url(url)}: {msg}"
    if url.startswith("sqlite") and ("malformed" in msg or "not a database" in msg):
        path = url.partition(":///")[2].partition("?")[0]
        line += (
            f"; the file is damaged: move it aside (mv {path} {path}.broken) to start with an empty "
            "store, or restore it from a backup"
        )
    return line


#: Threads that keep a connection of their own for the group commit (see ``SqlStore._cursor``).
HELD_CONNECTIONS = 2

#: A kept connection idle this long (seconds) is checked before its next use (not on SQLite):
#: the database may have restarted meanwhile. Busy, it is used many times a second, unchecked.
PING_AFTER = 1.0


class Transaction:
    """``with store._cursor() as cur``: see ``SqlStore._cursor`` (a class: it is on the hot path)."""

    __slots__ = ("_cur", "_keep", "_raw", "_store")

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._raw: Any = None
        self._keep = False
        self._cur: Any = None

    def __enter__(self) -> Any:
        store = self._store
        try:
            self._raw, self._keep = store._connection()
            self._cur = self._raw.cursor()
        except BaseException as exc:
            self._release()
            translated = store._translate(exc)
            if translated is exc:
                raise
            raise translated from None
        return self._cur

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        store, raw, raised = self._store, self._raw, exc
        try:
            if exc is None:
                raw.commit()
            else:
                try:
                    raw.rollback()
                except store._dbapi_error:
                    store._broken(raw)
                    self._keep = True  # invalidated: nothing to give back
        except BaseException as failure:
            exc = failure
            try:
                raw.rollback()
            except store._dbapi_error:
                store._broken(raw)
                self._keep = True
        finally:
            self._cur.close()
            self._release()
        if exc is not None:
            translated = store._translate(exc)
            if translated is not exc:
                raise translated from None
            if exc is not raised:
                raise exc  # commit() failed

    def _release(self) -> None:
        if self._raw is not None and not self._keep:
            self._raw.close()  # back to the pool


def alive(raw: Any, error: type[Exception]) -> bool:
    """Does a kept connection that sat idle still reach the server? The pool checks the
    connections it hands out; a kept one is checked before its first use after a pause, so that
    the first write after a database restart does not fail on it."""
    try:
        cur = raw.cursor()
        try:
            cur.execute("SELECT 1")
        finally:
            cur.close()
        raw.rollback()
    except error:
        return False
    return True


def absolute_url(url: str) -> str:
    """A SQLite URL with its path made absolute, so that a process started elsewhere (the
    server's scheduler child) opens the same file; other URLs as they are."""
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError as SAArgumentError

    try:
        parsed = sa.engine.make_url(url)
    except SAArgumentError:
        return url  # opening the store says what is wrong with it
    db = parsed.database
    if not parsed.drivername.startswith("sqlite") or not db or db == ":memory:" or Path(db).is_absolute():
        return url
    return parsed.set(database=str(Path(db).absolute())).render_as_string(hide_password=False)


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # The wait for a lock first: switching a new file to WAL takes one too.
    busy_ms = int(os.environ.get("CONVEYOR_BUSY_TIMEOUT_MS", "10000"))
    cur.execute(f"PRAGMA busy_timeout={busy_ms}")
    # Several processes opening a new file at once: the switch to WAL can be refused at once
    # ("database is locked") rather than waited for; try again for as long as a lock is waited for.
    deadline = time.monotonic() + busy_ms / 1000
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except Exception as exc:  # sqlite3.OperationalError, without importing it here
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    # NORMAL in WAL mode: a commit survives the crash of any process (no fsync per commit; the
    # WAL is synced at checkpoints). Only a power cut can lose the last commits.
    cur.execute("PRAGMA synchronous=NORMAL")
    # A large run's indexes outgrow SQLite's default 8 MB page cache, and every commit then
    # rereads their pages: 32 MB keeps a 100,000-task run's working set in memory.
    cur.execute("PRAGMA cache_size=-32768")
    cur.close()


#: A transaction left open this long by a stalled process (SIGSTOP, a frozen VM, a network
#: partition) is ended by the server, which releases its row locks: a partition whose owner
#: stalled mid-commit can then be taken over. A healthy transaction is never idle this long.
IDLE_IN_TRANSACTION_MS = int(os.environ.get("CONVEYOR_PG_IDLE_TX_TIMEOUT_MS", "5000"))


def postgresql_session(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
    cur.close()
    dbapi_conn.commit()
