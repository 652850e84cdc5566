"""Table targets: one partition of a database table, written exactly once.

    @task(output=TableTarget("sqlite:///warehouse.db", "sales", partition={"day": "{day}"}))
    def ingest(day: date) -> None:
        with output().transaction() as conn:
            output().insert(conn, rows)          # or any SQL on conn; pandas' to_sql(con=conn)

The task's rows and a *marker row* (in ``conveyor_targets``, a small table Conveyor creates in
the same database, naming the run, instance and attempt) are committed in ONE transaction, after
the task returned: a crash before the commit leaves nothing, one after it leaves the task done.
Done means the marker is there. ``replace=True`` (or ``conveyor run --force``) deletes the
partition's rows and its marker in the same transaction before the task writes, so a re-run never
duplicates; two attempts racing cannot both commit (the marker's primary key refuses the
second, whose rows roll back: "already done by attempt N").

The URL is any SQLAlchemy URL, or ``"$NAME"`` to read it from the environment variable NAME at
run time (credentials then stay out of the code and the run record); no URL is ever shown with
its password.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from conveyor.errors import DefinitionError, TargetError
from conveyor.targets import databases as db
from conveyor.targets.base import DIRECT, NotWritten, Output, Writer

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine, RootTransaction

#: The marker table Conveyor keeps in each database it writes table targets into.
MARKERS = "conveyor_targets"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_FIELD = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
#: Keys per marker query (under the limit of bound parameters of PostgreSQL and of SQLite from
#: 3.32; an older SQLite gets 999).
CHUNK = 5000


class AlreadyDone(TargetError):
    """Another attempt of the same instance committed this partition first."""

    def __init__(self, target: TableTarget, marker: Mapping[str, Any]) -> None:
        who = (
            f"attempt {marker['attempt']} of run {marker['run_id']}"
            if marker.get("run_id")
            else "a write outside any run"
        )
        super().__init__(
            f"{target.describe()} was already done by {who}; this attempt's rows were rolled back"
        )
        writer = Writer(marker.get("run_id", ""), marker.get("instance_id", ""), marker.get("attempt", 0))
        self.fingerprint = fingerprint(target, int(marker.get("row_count") or 0), writer)


def _bound(value: Any) -> Any:
    """A partition value as bound in SQL: dates as ISO text (PostgreSQL casts it to a date
    column's type, and SQLite keeps dates as ISO text)."""
    return value.isoformat() if isinstance(value, date | datetime) else value


class TableTarget(Output):
    """A partition (or the whole) of table ``table`` in the database at ``url``."""

    __slots__ = ("create", "partition", "replace", "table", "url")
    order = 1

    def __init__(
        self,
        url: str,
        table: str,
        partition: Mapping[str, Any] | None = None,
        *,
        replace: bool = False,
        create: str | Sequence[str] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise DefinitionError(f"TableTarget needs a database URL (or $ENV_VAR), got {url!r}")
        if not isinstance(table, str) or not table:
            raise DefinitionError(f"TableTarget needs a table name, got {table!r}")
        if "{" not in table and not all(_IDENT.match(p) for p in table.split(".", 1)):
            raise DefinitionError(
                f"TableTarget: {table!r} is not a table name; use letters, digits and _ "
                "(schema.table for a schema)"
            )
        part = dict(partition or {})
        for column, value in part.items():
            if not isinstance(column, str) or not _IDENT.match(column):
                raise DefinitionError(
                    f"TableTarget {table}: partition column {column!r} is not a column name"
                )
            if not isinstance(value, str | int | float | bool | date | datetime):
                raise DefinitionError(
                    f"TableTarget {table}: partition value {column}={value!r} must be a string "
                    "(a template like '{day}'), a number or a date"
                )
        ddl = (
            (create,)
            if isinstance(create, str)
            else tuple(create or ())
            if isinstance(create, list | tuple)
            else ()
        )
        if create is not None and (
            not isinstance(create, str | list | tuple)
            or not all(isinstance(s, str) and s.strip() for s in ddl)
        ):
            raise DefinitionError(
                f"TableTarget {table}: create= is the SQL that makes the table (a statement or a "
                f"list of them), got {create!r}"
            )
        self.url = url
        self.table = table
        self.partition: dict[str, Any] = part
        self.replace = bool(replace)
        self.create = ddl

    # -- identity ---------------------------------------------------------------------------
    def _ident(self) -> tuple[str, str, str]:
        return (self.url, self.table, _canonical(self.partition))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TableTarget) and other._ident() == self._ident()

    def __hash__(self) -> int:
        return hash(self._ident())

    def __repr__(self) -> str:
        part = f", partition={self.partition!r}" if self.partition else ""
        return f"TableTarget({self.shown_url!r}, {self.table!r}{part})"

    def __str__(self) -> str:
        return self.describe()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.url, self.table, self.partition, self.replace, self.create))

    def describe(self) -> str:
        where = ", ".join(f"{k}={_bound(v)}" for k, v in self.partition.items())
        return f"{self.table}[{where}] in {self.shown_url}" if where else f"{self.table} in {self.shown_url}"

    @property
    def shown_url(self) -> str:
        """The URL without its password (an environment variable's name as written)."""
        return db.hide(self.url)

    @property
    def key(self) -> str:
        """The marker's primary key: the table and its partition, hashed."""
        text = f"{self.table}\0{_canonical(self.partition)}"
        return hashlib.sha256(text.encode()).hexdigest()

    # -- templates --------------------------------------------------------------------------
    def templates(self) -> Sequence[str]:
        return [self.url, self.table, *(v for v in self.partition.values() if isinstance(v, str))]

    def render(self, values: Mapping[str, Any]) -> TableTarget:
        def fill(v: Any) -> Any:
            if not isinstance(v, str):
                return v
            whole = _FIELD.match(v)
            if whole:  # "{day}" alone: the parameter's own value, a date stays a date
                return values[whole.group(1)]
            return v.format(**values)

        return TableTarget(
            fill(self.url),
            fill(self.table),
            {k: fill(v) for k, v in self.partition.items()},
            replace=self.replace,
            create=self.create,
        )

    # -- the database -----------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """This process's SQLAlchemy engine for the target's database."""
        return db.engine(self.url)

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading (``conn.execute(target.select())``), closed on exit."""
        with db.reaching(self), self.engine.connect() as conn:
            yield conn

    def clause(self, *columns: str) -> Any:
        """The table as a SQLAlchemy ``table()`` clause with these columns (and the partition's)."""
        import sqlalchemy as sa

        schema, _, name = self.table.rpartition(".")
        names = dict.fromkeys([*self.partition, *columns])
        return sa.table(name, *(sa.column(c) for c in names), schema=schema or None)

    def where(self, clause: Any) -> Any:
        """``clause``'s WHERE condition selecting this partition (None: the whole table). The
        values are SQL literals: an untyped '2026-01-01' is a date to a date column and text to
        a text column (a bound parameter would carry its own type, and PostgreSQL refuses to
        compare a date with a varchar)."""
        import sqlalchemy as sa

        if not self.partition:
            return sa.true()
        return sa.and_(
            *(
                clause.c[k] == sa.bindparam(None, _bound(v), literal_execute=True)
                for k, v in self.partition.items()
            )
        )

    def select(self, *columns: str) -> Any:
        """``SELECT columns FROM table WHERE <partition>`` (all columns when none are named)."""
        import sqlalchemy as sa

        t = self.clause(*columns)
        cols = [t.c[c] for c in columns] if columns else [sa.text("*")]
        return sa.select(*cols).select_from(t).where(self.where(t))

    def count(self) -> int:
        """How many rows the partition holds."""
        with self.connect() as conn:
            return _count(conn, self)

    def rows(self, *columns: str) -> list[dict[str, Any]]:
        """The partition's rows, as dicts (for small partitions; else ``select`` and stream)."""
        with self.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(self.select(*columns))]

    def marker(self) -> dict[str, Any] | None:
        """The marker row saying who wrote this partition and when, or None (not done)."""
        if self._absent():
            return None
        with self.connect() as conn:
            return _marker(conn, self)

    # -- the driver's part ------------------------------------------------------------------
    def check(self) -> None:
        url = db.resolve(self.url, self.table)
        if url.drivername.startswith("sqlite") and url.database in (None, "", ":memory:"):
            raise TargetError(
                f"table target {self.table}: an in-memory SQLite database lives in one process, and "
                "each task runs in a worker process of its own; use a file (sqlite:///path.db)"
            )
        db.check_driver(url, self.table)

    def exists(self) -> bool:
        return self.marker() is not None

    def bulk_key(self) -> Hashable:
        return self.url

    @classmethod
    def done_among(cls, targets: Sequence[Output]) -> set[Output]:
        tables = [t for t in targets if isinstance(t, TableTarget)]
        if not tables or tables[0]._absent():
            return set()
        by_key = {t.key: t for t in tables}
        import sqlalchemy as sa

        markers = _markers_table()
        keys = list(by_key)
        found: set[str] = set()
        with tables[0].connect() as conn:
            chunk = CHUNK
            version = getattr(conn.dialect.dbapi, "sqlite_version_info", None)
            if conn.dialect.name == "sqlite" and version is not None and version < (3, 32):
                chunk = 999  # an older SQLite's limit of bound parameters
            for i in range(0, len(keys), chunk):
                query = sa.select(markers.c.key).where(markers.c.key.in_(keys[i : i + chunk]))
                result = _read_markers(conn, tables[0], query)
                if result is None:
                    return set()
                found.update(result.scalars())
        return {by_key[k] for k in found}

    # -- the runner's part ------------------------------------------------------------------
    def stage(self, *, replace: bool = False) -> StagedTable:
        return StagedTable(self, replace=replace or self.replace, deferred=True)

    def transaction(self, *, replace: bool | None = None) -> Any:
        """Write the partition outside a run (a task called as a plain function): the rows and
        the marker are committed when the block ends."""
        staged = StagedTable(self, replace=self.replace if replace is None else replace, deferred=False)
        return staged.transaction()

    def insert(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """As ``output().insert`` under a run: for a task called as a plain function, whose
        ``output()`` is the target itself."""
        return StagedTable(self, replace=False, deferred=False).insert(conn, rows)

    def finish(self, staged: StagedTable, writer: Writer) -> dict[str, Any]:
        return staged.commit(writer)

    def abandon(self, staged: StagedTable) -> None:
        staged.rollback()

    def _absent(self) -> bool:
        """True when the database is a SQLite file that does not exist (nothing is done, and
        connecting would create an empty file)."""
        url = db.resolve(self.url, self.table)
        if not url.drivername.startswith("sqlite") or not url.database:
            return False
        return not os.path.exists(url.database)


class StagedTable:
    """What ``conveyor.output()`` gives a task for a table target: its writes go through
    ``transaction()``; the runner commits them, with the marker, after the task returned."""

    def __init__(self, target: TableTarget, *, replace: bool, deferred: bool) -> None:
        self.target = target
        self.replace = replace
        self._deferred = deferred
        self._open: tuple[Connection, RootTransaction] | None = None
        self._used = False
        self.url, self.table, self.partition = target.url, target.table, target.partition

    def __repr__(self) -> str:
        return f"<staged {self.target.describe()}>"

    def __getattr__(self, name: str) -> Any:  # select, clause, where, engine, ... of the target
        return getattr(self.target, name)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """The task's writes: a connection inside the transaction that commits them with the
        marker. Opened once per attempt."""
        import sqlalchemy as sa

        if self._used:
            raise TargetError(
                f"table target {self.target.describe()}: transaction() was opened already in this "
                "attempt; write all of the partition's rows in one transaction"
            )
        self._used = True
        conn, trans = _begin(self.target, self.replace)
        try:
            yield conn
        except BaseException as exc:
            _close(conn, trans)
            if isinstance(exc, sa.exc.DBAPIError):
                raise db.failed(self.target, exc, writing=True) from None
            raise
        self._open = (conn, trans)
        if not self._deferred:
            self.commit(DIRECT)

    def insert(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert ``rows`` (dicts of column values; the partition's columns are filled in when a
        row leaves them out). Returns how many."""
        # Values as they are (PostgreSQL assigns a date to a text column too), but dates as ISO
        # text for SQLite, whose driver's date adapter is deprecated.
        sqlite = conn.dialect.name == "sqlite"
        fill = {k: _bound(v) if sqlite else v for k, v in self.target.partition.items()}
        batch = [{**fill, **r} for r in rows]
        if not batch:
            return 0
        t = self.target.clause(*batch[0])
        conn.execute(t.insert(), batch)
        return len(batch)

    def commit(self, writer: Writer) -> dict[str, Any]:
        """Count the partition, add the marker and commit: the attempt's "done"."""
        import sqlalchemy as sa

        target = self.target
        if self._open is None:
            raise NotWritten(
                f"returned but wrote nothing to its table target {target.describe()}: "
                "write its rows inside `with conveyor.output().transaction() as conn:`"
            )
        conn, trans = self._open
        self._open = None
        try:
            rows = _count(conn, target)
            conn.execute(
                _markers_table().insert(),
                {
                    "key": target.key,
                    "table_name": target.table,
                    "part": _canonical(target.partition),
                    "run_id": writer.run_id,
                    "instance_id": writer.instance,
                    "attempt": writer.attempt,
                    "row_count": rows,
                    "written_at": time.time(),
                },
            )
            trans.commit()
        except sa.exc.IntegrityError:
            _close(conn, trans)
            raise AlreadyDone(target, target.marker() or {}) from None
        except sa.exc.DBAPIError as exc:
            _close(conn, trans)
            raise db.failed(target, exc, writing=True) from None
        finally:
            conn.close()
        return fingerprint(target, rows, writer)

    def rollback(self) -> None:
        if self._open is not None:
            _close(*self._open)
            self._open = None


def fingerprint(target: TableTarget, rows: int, writer: Writer) -> dict[str, Any]:
    return {
        "kind": "table",
        "target": target.describe(),
        "table": target.table,
        "partition": {k: _bound(v) for k, v in target.partition.items()},
        "rows": rows,
        "written_by": {"run": writer.run_id, "attempt": writer.attempt} if writer.run_id else None,
    }


def _rebuild(
    url: str, table: str, partition: dict[str, Any], replace: bool, create: tuple[str, ...]
) -> TableTarget:
    return TableTarget(url, table, partition, replace=replace, create=create)


def _canonical(partition: Mapping[str, Any]) -> str:
    return json.dumps({k: _bound(v) for k, v in partition.items()}, sort_keys=True, default=str)


# -- SQL ----------------------------------------------------------------------------------------
_meta: Any = None


def _markers_table() -> Any:
    global _meta
    import sqlalchemy as sa

    if _meta is None:
        _meta = sa.MetaData()
        sa.Table(
            MARKERS,
            _meta,
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("table_name", sa.String(255), nullable=False),
            sa.Column("part", sa.Text, nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("instance_id", sa.String(64), nullable=False),
            sa.Column("attempt", sa.Integer, nullable=False),
            sa.Column("row_count", sa.BigInteger, nullable=False),
            sa.Column("written_at", sa.Float, nullable=False),
        )
    return _meta.tables[MARKERS]


def _count(conn: Connection, target: TableTarget) -> int:
    import sqlalchemy as sa

    t = target.clause()
    return int(conn.execute(sa.select(sa.func.count()).select_from(t).where(target.where(t))).scalar_one())


def _marker(conn: Connection, target: TableTarget) -> dict[str, Any] | None:
    import sqlalchemy as sa

    markers = _markers_table()
    result = _read_markers(conn, target, sa.select(markers).where(markers.c.key == target.key))
    row = result.first() if result is not None else None
    return dict(row._mapping) if row is not None else None


def _read_markers(conn: Connection, target: TableTarget, query: Any) -> Any:
    """The query's result, or None when the database has no marker table yet (nothing in it is
    done). A marker table made by another process between the failed query and the look at the
    catalog is read again, not reported as a failure."""
    import sqlalchemy as sa

    for _ in range(2):
        try:
            return conn.execute(query)
        except sa.exc.DBAPIError as exc:
            failure = exc
            conn.rollback()  # PostgreSQL refuses more statements in a transaction that failed
            if not sa.inspect(conn).has_table(MARKERS):
                return None
    raise db.failed(target, failure) from None


def _begin(target: TableTarget, replace: bool) -> tuple[Connection, RootTransaction]:
    """A connection in a write transaction, the marker table made, the partition cleared when
    replacing; AlreadyDone when another attempt committed it (and not replacing)."""
    import sqlalchemy as sa

    url = db.resolve(target.url, target.table)
    if url.drivername.startswith("sqlite") and url.database:
        os.makedirs(os.path.dirname(os.path.abspath(url.database)), exist_ok=True)
    _ensure_tables(target)
    with db.reaching(target):
        conn = target.engine.connect().execution_options(conveyor_write=True)
    trans = conn.begin()
    try:
        marker = _marker(conn, target)
        if marker is not None and not replace:
            raise AlreadyDone(target, marker)
        if replace:
            markers = _markers_table()
            conn.execute(sa.delete(markers).where(markers.c.key == target.key))
            schema, name = _split(target.table)
            if sa.inspect(conn).has_table(name, schema=schema):
                t = target.clause()
                conn.execute(sa.delete(t).where(target.where(t)))
    except BaseException as exc:
        _close(conn, trans)
        if isinstance(exc, sa.exc.DBAPIError):
            raise db.failed(target, exc, writing=True) from None
        raise
    return conn, trans


def _split(table: str) -> tuple[str | None, str]:
    schema, _, name = table.rpartition(".")
    return (schema or None, name)


def _ensure_tables(target: TableTarget) -> None:
    """Make the marker table, and the target's table if it says how (``create=``), once per
    database and process, each in a short transaction of its own that writers of other
    processes wait for (PostgreSQL refuses two ``CREATE TABLE IF NOT EXISTS`` of one table in
    transactions open at once)."""
    import sqlalchemy as sa

    todo: list[tuple[str, str | None]] = [] if target.url in _made else [(target.url, None)]
    if target.create and (target.url, target.table) not in _made:
        todo.append((target.url, target.table))
    for key in todo:
        with db.reaching(target), target.engine.connect().execution_options(conveyor_write=True) as conn:
            try:
                with conn.begin():
                    db.lock(conn, f"conveyor-ddl:{key[1] or MARKERS}")
                    if key[1] is None:
                        _markers_table().create(conn, checkfirst=True)
                    else:
                        for statement in target.create:
                            conn.exec_driver_sql(statement)
            except sa.exc.DBAPIError as exc:
                raise db.failed(target, exc, writing=True) from None
        _made.add(key[0] if key[1] is None else key)


_made: set[Any] = set()  # the databases (and tables) this process has seen made


def _close(conn: Connection, trans: RootTransaction) -> None:
    try:
        if trans.is_active:
            trans.rollback()
    except Exception:
        pass
    try:
        conn.close()
    except Exception:
        pass
