"""The databases table targets write into: one SQLAlchemy engine per database and process, URLs
from the environment ("$NAME"), never shown with a password, and failures as one line."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from conveyor.errors import TargetError
from conveyor.targets import objects

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

    from conveyor.targets.tables import TableTarget

#: What to install for a database driver that is missing, by dialect.
EXTRAS = {"postgresql": "conveyor[postgres]"}

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()


def engine(url_text: str) -> Engine:
    key = (os.getpid(), url_text)  # a forked worker makes its own: connections do not survive fork
    found = _engines.get(key)
    if found is not None:
        return found
    with _lock:
        if key not in _engines:
            _engines[key] = _create(url_text)
        return _engines[key]


def _create(url_text: str) -> Engine:
    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.pool import NullPool

    url = resolve(url_text, "")
    check_driver(url, "")
    if url.drivername.startswith("sqlite"):
        engine = sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _autocommit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN, not the driver's

        @event.listens_for(engine, "begin")
        def _begin_sqlite(conn: Connection) -> None:
            # A writer takes the write lock as it begins: racing writers queue, none deadlocks.
            write = conn.get_execution_options().get("conveyor_write")
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def resolve(text: str, table: str) -> Any:
    """The SQLAlchemy URL object for ``text`` ("$NAME": from that environment variable)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = text
    if text.startswith("$"):
        name = text[1:]
        raw = os.environ.get(name, "")
        if not raw:
            raise TargetError(
                f"table target {table}: the environment variable {name} (its database URL) is not set"
            )
    try:
        return make_url(raw)
    except ArgumentError:
        shown = text if text.startswith("$") else hide(raw)
        raise TargetError(
            f"table target {table}: {shown!r} is not a database URL; write it like "
            "sqlite:///path.db or postgresql+psycopg://user@host/db"
        ) from None


def check_driver(url: Any, table: str) -> None:
    """Raise a one-line error when the URL's database driver is not installed."""
    from sqlalchemy.exc import NoSuchModuleError

    try:
        url.get_dialect().import_dbapi()
    except NoSuchModuleError:
        raise TargetError(
            f"table target {table}: {url.drivername!r} is not a database SQLAlchemy knows"
        ) from None
    except ImportError as exc:
        extra = EXTRAS.get(url.get_backend_name())
        how = f"pip install '{extra}'" if extra else f"install the Python package {exc.name or 'it needs'}"
        raise TargetError(
            f"table target {table}: the driver for {url.drivername} is not installed; {how}"
        ) from None


def hide(text: str) -> str:
    """A database URL without its password (an environment variable's name as written)."""
    if text.startswith("$"):
        return text
    try:
        from sqlalchemy.engine import make_url

        return str(make_url(text).render_as_string(hide_password=True))
    except Exception:
        return objects.hide(text)  # not a URL SQLAlchemy parses: hide what looks like one


@contextmanager
def reaching(target: TableTarget) -> Iterator[None]:
    """Turn a failure to connect into one line naming the database (without its password)."""
    import sqlalchemy as sa

    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise failed(target, exc) from None


def failed(target: TableTarget, exc: Any, *, writing: bool = False) -> TargetError:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    url = resolve(target.url, target.table)
    if url.password:
        text = text.replace(str(url.password), "***")
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.OperationalError) and not writing:
        return TargetError(f"cannot reach the database of table target {target.describe()}: {text}")
    if writing and "pg_type_typname_nsp_index" in text:
        return TargetError(
            f"writing table target {target.describe()} failed: two tasks created its table at once; "
            "give the TableTarget create='CREATE TABLE IF NOT EXISTS ...' and Conveyor makes it once"
        )
    if writing:
        return TargetError(
            f"writing table target {target.describe()} failed: {text} "
            "(do the task's rows fit the table's columns?)"
        )
    return TargetError(f"table target {target.describe()}: {text}")


def lock(conn: Connection, name: str) -> None:
    """Take a lock named ``name`` until the transaction ends, where the database has such locks
    (PostgreSQL's advisory locks; a SQLite writer holds the whole database already)."""
    if conn.dialect.name == "postgresql":
        import hashlib

        from sqlalchemy import text

        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
