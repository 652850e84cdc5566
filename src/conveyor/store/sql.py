"""The store on SQLAlchemy Core: SQLite (WAL) by default; the only module that knows SQL.

The driver's group commit and the reads and writes that scale with the size of a run (creating
its instances, reading them back) run statements compiled once per store for its dialect,
straight on the DBAPI cursor with ``executemany``: building and compiling Core statements per
call cost several times more than the database work. Everything else goes through Core.
"""

from __future__ import annotations

import functools
import json
import operator
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import ArgumentError as SAArgumentError
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from conveyor.errors import RunBusy, RunNotFound, SchemaError, StaleEpochError, StoreError
from conveyor.store import schema as t
from conveyor.store.records import (
    AttemptRecord,
    Batch,
    InstanceRecord,
    RunRecord,
    TransitionRecord,
)

T = TypeVar("T")
_MIGRATIONS = Path(__file__).with_name("migrations")

#: Alembic's own bookkeeping table, as ``alembic upgrade`` creates it.
_alembic_version = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)

_RUN_COLUMNS = tuple(c.key for c in t.runs.columns)
_INSTANCE_COLUMNS = tuple(c.key for c in t.task_instances.columns)
_ATTEMPT_COLUMNS = tuple(c.key for c in t.attempts.columns)
_TRANSITION_COLUMNS = ("run_id", "instance_id", "old", "new", "at", "cause", "attempt")
_ATTEMPT_END_COLUMNS = ("state", "ended_at", "error")


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except SAArgumentError:
        return url


class _Sql:
    """A statement compiled once for a dialect, run on a DBAPI cursor.

    Callers give each row's values as a tuple in ``order`` (column names); a bind named ``v_col``
    or ``k_col`` (prefixed so it never clashes with a column's own bind) takes ``col``. Where the
    dialect is positional and its order is ``order`` (SQLite, always, for these statements), the
    tuples go to the driver as they are.
    """

    __slots__ = ("_direct", "_names", "_pick", "_positional", "_procs", "text")

    def __init__(
        self, stmt: Any, dialect: Dialect, order: Sequence[str], column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=column_keys)
        self.text: str = compiled.string
        self._positional = bool(compiled.positional)
        names = list(compiled.positiontup or []) if self._positional else list(compiled.binds)
        self._names = names
        keys = [n[2:] if n[:2] in ("v_", "k_") else n for n in names]
        index = [list(order).index(k) for k in keys]
        self._pick = operator.itemgetter(*index) if len(index) > 1 else lambda row: (row[index[0]],)
        self._procs: list[tuple[int, str, Callable[[Any], Any]]] = []
        for i, name in enumerate(names):
            typ = compiled.binds[name].type
            if dialect.name == "sqlite" and isinstance(typ, sa.Float):
                continue  # float(): what the column's REAL affinity does anyway
            proc = typ.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self._procs.append((i, name, proc))
        self._direct = self._positional and keys == list(order) and not self._procs

    def rows(self, rows: list[tuple[Any, ...]]) -> list[Any]:
        """DBAPI parameters for ``rows`` (tuples in ``order``)."""
        if self._direct:
            return rows
        return [self.one(row) for row in rows]

    def one(self, row: tuple[Any, ...]) -> Any:
        got = self._pick(row)
        if self._positional:
            out = list(got)
            for i, _, proc in self._procs:
                out[i] = proc(out[i])
            return out
        named = dict(zip(self._names, got, strict=True))
        for _, name, proc in self._procs:
            named[name] = proc(named[name])
        return named


#: Threads that keep a connection of their own for the group commit (see ``_cursor``).
_HELD_CONNECTIONS = 2
#: Statements compiled per dialect, shared by every store of the process.
_COMPILED: dict[Hashable, _Sql] = {}


class SqlStore:
    """Runs, task instances, attempts and transitions in a SQL database."""

    def __init__(self, url: str, *, migrate: bool = True, check: bool = True) -> None:
        """Open the store; ``migrate`` creates the schema in an empty database; ``check=False``
        accepts any schema revision (for ``conveyor db upgrade``)."""
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except SAArgumentError:
            raise StoreError(
                f"store URL {url!r} is not a database URL; use sqlite:///path/conveyor.db"
            ) from None
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        fresh = False
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            db = Path(parsed.database)
            db.parent.mkdir(parents=True, exist_ok=True)
            fresh = not db.exists() or db.stat().st_size == 0
        try:
            self.engine: Engine = sa.create_engine(url, **kwargs)
        except (NoSuchModuleError, ImportError, SAArgumentError) as exc:
            raise StoreError(f"cannot open store {safe_url(url)}: {exc}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sql: dict[Hashable, _Sql] = {}
        self._local = threading.local()
        self._held: list[Any] = []
        self._held_lock = threading.Lock()
        dbapi = self.engine.dialect.loaded_dbapi
        self._dbapi_error: type[Exception] = getattr(dbapi, "Error", Exception)
        if fresh and migrate:
            self._create()  # a new SQLite file: no schema to read
        elif check:
            self._check_schema(migrate)

    # -- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except (StaleEpochError, RunBusy, RunNotFound):
            raise
        except DBAPIError as exc:
            msg = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreError(f"store {safe_url(self.url)}: {msg}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"store {safe_url(self.url)}: {exc}") from None

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A DBAPI cursor in one transaction, committed when the block ends without error.

        The first threads to ask keep a connection checked out of the pool for these (the group
        commit runs hundreds of times a second; a checkout and check-in each time cost more than
        a small commit); ``close()`` returns them. Other threads check one out per call.
        """
        raw = getattr(self._local, "raw", None)
        keep = raw is not None
        try:
            if raw is None:
                raw = self.engine.raw_connection()
                with self._held_lock:
                    keep = len(self._held) < _HELD_CONNECTIONS
                    if keep:
                        self._held.append(raw)
                        self._local.raw = raw
            cur = raw.cursor()
            try:
                yield cur
                raw.commit()
            except BaseException:
                try:
                    raw.rollback()
                except self._dbapi_error:
                    if keep:  # broken: the next transaction takes a fresh one
                        self._local.raw = None
                        with self._held_lock:
                            self._held.remove(raw)
                        keep = False
                    raw.invalidate()
                raise
            finally:
                cur.close()
        except self._dbapi_error as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreError(f"store {safe_url(self.url)}: {msg}") from None
        except SQLAlchemyError as exc:
            raise StoreError(f"store {safe_url(self.url)}: {exc}") from None
        finally:
            if raw is not None and not keep:
                raw.close()  # back to the pool

    def _stmt(
        self,
        key: Hashable,
        build: Callable[[], Any],
        order: Sequence[str],
        column_keys: Sequence[str] | None = None,
    ) -> _Sql:
        sql = self._sql.get(key)
        if sql is None:
            dialect = self.engine.dialect
            shared = (dialect.name, dialect.driver, dialect.paramstyle, key)
            sql = _COMPILED.get(shared)
            if sql is None:
                sql = _COMPILED[shared] = _Sql(build(), dialect, order, column_keys)
            self._sql[key] = sql
        return sql

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._tx() as conn:
            return fn(conn)

    def close(self) -> None:
        with self._held_lock:
            held, self._held = self._held, []
        for raw in held:
            raw.close()  # back to the pool, which dispose() closes
        self._local = threading.local()
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------------
    def revision(self) -> str | None:
        def read(conn: Connection) -> str | None:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

        return self._read(read)

    def _check_schema(self, migrate: bool) -> None:
        rev = self.revision()
        if rev == t.SCHEMA_REVISION:
            return
        if rev is None and migrate and not self._read(lambda c: sa.inspect(c).get_table_names()):
            self._create()
            return
        if rev is None:
            raise SchemaError(
                f"store {safe_url(self.url)} has tables but no Conveyor schema version; "
                "point --db at an empty database or a Conveyor store"
            )
        if rev > t.SCHEMA_REVISION:
            raise SchemaError(
                f"store {safe_url(self.url)} has schema {rev}, newer than this Conveyor's "
                f"{t.SCHEMA_REVISION}; upgrade Conveyor to use it"
            )
        raise SchemaError(
            f"store {safe_url(self.url)} has schema {rev}, this Conveyor needs "
            f"{t.SCHEMA_REVISION}; run: conveyor db upgrade --db '{safe_url(self.url)}'"
        )

    def _create(self) -> None:
        """An empty database gets the current schema at once, stamped with its revision.

        The migrations build exactly ``schema.metadata`` (a test compares the two), so creating it
        directly is the same as migrating from nothing, without loading Alembic. Processes that
        open a new store at the same moment: one creates it, the others find it created.
        """
        if self.dialect == "sqlite":
            with self._cursor() as cur:
                cur.execute("BEGIN IMMEDIATE")  # the write lock first: the others wait here
                cur.execute("SELECT count(*) FROM sqlite_master")
                empty = cur.fetchone()[0] == 0
                if empty:  # DDL inside the transaction: nobody sees half a schema
                    for ddl in _schema_ddl(self.engine.dialect):
                        cur.execute(ddl)
                    stamp = self._stmt("stamp", _stamp, ("version_num",))
                    cur.execute(stamp.text, stamp.one((t.SCHEMA_REVISION,)))
            if not empty:
                self._check_schema(migrate=False)
            return
        try:
            with self._tx() as conn:
                t.metadata.create_all(conn)
                _alembic_version.create(conn)
                conn.execute(_stamp(), {"v_version_num": t.SCHEMA_REVISION})
        except StoreError:
            if self.revision() is None:
                raise
            self._check_schema(migrate=False)  # another process created it meanwhile

    def upgrade(self) -> str:
        """Apply the Alembic migrations up to the head; return the new revision."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self._tx() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return self.revision() or ""

    # -- runs ---------------------------------------------------------------------------------
    def create_run(self, run: RunRecord, instances: Sequence[InstanceRecord]) -> None:
        with self._cursor() as cur:
            ins = self._stmt("insert_run", t.runs.insert, _RUN_COLUMNS, _RUN_COLUMNS)
            cur.execute(ins.text, ins.one(_run_row(run)))
            self._insert_instances(cur, instances, start=0)

    def add_instances(self, run_id: str, instances: Sequence[InstanceRecord]) -> None:
        """Add instances to an existing run (its pipeline's graph grew since it started)."""
        with self._tx() as conn:
            seq = conn.execute(
                sa.select(sa.func.count()).where(t.task_instances.c.run_id == run_id)
            ).scalar_one()
            conn.execute(
                t.runs.update().where(t.runs.c.id == run_id).values(total=t.runs.c.total + len(instances))
            )
        with self._cursor() as cur:
            self._insert_instances(cur, instances, start=seq)

    def _insert_instances(self, cur: Any, rows: Sequence[InstanceRecord], start: int) -> None:
        if rows:
            ins = self._stmt("insert_instance", t.task_instances.insert, _INSTANCE_COLUMNS, _INSTANCE_COLUMNS)
            cur.executemany(ins.text, ins.rows([_instance_row(r, start + i) for i, r in enumerate(rows)]))

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or the only one whose id starts with it."""

        def read(conn: Connection) -> RunRecord:
            row = conn.execute(sa.select(t.runs).where(t.runs.c.id == run_id)).mappings().first()
            if row is None and run_id:
                found = (
                    conn.execute(
                        sa.select(t.runs).where(t.runs.c.id.startswith(run_id, autoescape=True)).limit(2)
                    )
                    .mappings()
                    .all()
                )
                if len(found) == 2:
                    raise RunNotFound(f"run id {run_id!r} is ambiguous; give more of it")
                row = found[0] if found else None
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {safe_url(self.url)}; see: conveyor runs")
            return _run_record(row, self._counts(conn, row["id"]))

        return self._read(read)

    def latest_run(self, key: str) -> RunRecord | None:
        def read(conn: Connection) -> RunRecord | None:
            row = (
                conn.execute(
                    sa.select(t.runs).where(t.runs.c.key == key).order_by(t.runs.c.created_at.desc()).limit(1)
                )
                .mappings()
                .first()
            )
            return None if row is None else _run_record(row, self._counts(conn, row["id"]))

        return self._read(read)

    def list_runs(
        self, *, limit: int = 20, pipeline: str | None = None, state: str | None = None
    ) -> list[RunRecord]:
        def read(conn: Connection) -> list[RunRecord]:
            q = sa.select(t.runs).order_by(t.runs.c.created_at.desc()).limit(limit)
            if pipeline:
                q = q.where(t.runs.c.pipeline == pipeline)
            if state:
                q = q.where(t.runs.c.state == state)
            rows = conn.execute(q).mappings().all()
            return [_run_record(r, self._counts(conn, r["id"])) for r in rows]

        return self._read(read)

    def _counts(self, conn: Connection, run_id: str) -> dict[str, int]:
        ti = t.task_instances
        rows = conn.execute(
            sa.select(ti.c.state, sa.func.count()).where(ti.c.run_id == run_id).group_by(ti.c.state)
        ).all()
        return {str(s): int(n) for s, n in rows}

    # -- instances, attempts, history ----------------------------------------------------------
    def instances(self, run_id: str) -> list[InstanceRecord]:
        ti = t.task_instances
        cols = [c for c in _INSTANCE_COLUMNS if c != "seq"]
        sel = self._stmt(
            "select_instances",
            lambda: (
                sa.select(*(ti.c[c] for c in cols))
                .where(ti.c.run_id == sa.bindparam("k_run_id"))
                .order_by(ti.c.seq)
            ),
            ("run_id",),
        )
        with self._cursor() as cur:
            cur.execute(sel.text, sel.one((run_id,)))
            rows = cur.fetchall()
        return [_instance_record(r) for r in rows]

    def attempts(self, run_id: str, instance_id: str | None = None) -> list[AttemptRecord]:
        def read(conn: Connection) -> list[AttemptRecord]:
            a = t.attempts
            q = sa.select(a).where(a.c.run_id == run_id)
            if instance_id is not None:
                q = q.where(a.c.instance_id == instance_id)
            rows = conn.execute(q.order_by(a.c.started_at, a.c.number)).mappings()
            return [AttemptRecord(**dict(r)) for r in rows]

        return self._read(read)

    def history(self, run_id: str, instance_id: str) -> list[TransitionRecord]:
        def read(conn: Connection) -> list[TransitionRecord]:
            tr = t.transitions
            rows = conn.execute(
                sa.select(tr.c.instance_id, tr.c.old, tr.c.new, tr.c.at, tr.c.cause, tr.c.attempt)
                .where(tr.c.run_id == run_id, tr.c.instance_id == instance_id)
                .order_by(tr.c.id)
            ).mappings()
            return [TransitionRecord(**dict(r)) for r in rows]

        return self._read(read)

    # -- leases -------------------------------------------------------------------------------
    def acquire(
        self,
        run_id: str,
        owner: str,
        ttl: float,
        *,
        is_dead: Callable[[str], bool] | None = None,
        now: float | None = None,
    ) -> int:
        """Take the run's lease (epoch + 1) if it is free, expired, or its owner is dead."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute(
                sa.select(t.runs.c.owner, t.runs.c.epoch, t.runs.c.lease_expires).where(t.runs.c.id == run_id)
            ).first()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {safe_url(self.url)}")
            cur_owner, epoch, expires = row
            live = cur_owner and expires is not None and expires > now
            if live and not (is_dead and is_dead(cur_owner)):
                raise RunBusy(
                    f"run {run_id} is being driven by {cur_owner} (lease until "
                    f"{time.strftime('%H:%M:%S', time.localtime(expires))}); wait for it to end "
                    "or stop that process"
                )
            updated = conn.execute(
                t.runs.update()
                .where(t.runs.c.id == run_id, t.runs.c.epoch == epoch)
                .values(owner=owner, epoch=epoch + 1, lease_expires=now + ttl)
            ).rowcount
            if updated != 1:
                raise RunBusy(f"run {run_id} was taken by another process just now; try again")
            return int(epoch) + 1

    def release(self, run_id: str, epoch: int) -> None:
        with self._tx() as conn:
            conn.execute(
                t.runs.update()
                .where(t.runs.c.id == run_id, t.runs.c.epoch == epoch)
                .values(owner=None, lease_expires=None)
            )

    # -- the group commit ---------------------------------------------------------------------
    def commit(self, run_id: str, epoch: int, batch: Batch, *, lease_until: float) -> None:
        """Write one batch in one transaction, fenced by the run's lease epoch."""
        run_cols = tuple(batch.run)
        fence = self._stmt(
            ("fence", run_cols), lambda: _fence(run_cols), ("lease_expires", *run_cols, "id", "epoch")
        )
        with self._cursor() as cur:
            cur.execute(fence.text, fence.one((lease_until, *batch.run.values(), run_id, epoch)))
            if cur.rowcount != 1:
                raise StaleEpochError(
                    f"run {run_id}: the lease (epoch {epoch}) was taken over by another process; "
                    "this one stops acting for it"
                )
            if batch.instances:
                for shape, rows in _shapes(batch.instances, "id").items():
                    cols = shape[1:]
                    upd = self._stmt(
                        ("instances", shape),
                        functools.partial(_instance_update, cols),
                        (*cols, "run_id", "id"),
                    )
                    cur.executemany(upd.text, upd.rows([(*r[1:], run_id, r[0]) for r in rows]))
            if batch.attempts_started:
                ins = self._stmt("insert_attempt", t.attempts.insert, _ATTEMPT_COLUMNS, _ATTEMPT_COLUMNS)
                cur.executemany(ins.text, ins.rows([_attempt_row(a) for a in batch.attempts_started]))
            if batch.attempts_ended:
                for shape, rows in _shapes(batch.attempts_ended, "instance_id", "number").items():
                    cols = shape[2:]
                    end = self._stmt(
                        ("attempts", shape),
                        functools.partial(_attempt_update, cols),
                        (*cols, "run_id", "instance_id", "number"),
                    )
                    cur.executemany(end.text, end.rows([(*r[2:], run_id, r[0], r[1]) for r in rows]))
            if batch.transitions:
                tr = self._stmt(
                    "insert_transition", t.transitions.insert, _TRANSITION_COLUMNS, _TRANSITION_COLUMNS
                )
                cur.executemany(
                    tr.text,
                    tr.rows(
                        [
                            (run_id, x.instance_id, x.old, x.new, x.at, x.cause, x.attempt)
                            for x in batch.transitions
                        ]
                    ),
                )


# -- statements -------------------------------------------------------------------------------
def _schema_ddl(dialect: Dialect) -> list[str]:
    """``CREATE`` statements for every table and index, as ``metadata.create_all`` emits them."""
    ddl = []
    for table in [*t.metadata.sorted_tables, _alembic_version]:
        ddl.append(str(CreateTable(table).compile(dialect=dialect)))
        ddl += [str(CreateIndex(ix).compile(dialect=dialect)) for ix in sorted(table.indexes, key=str)]
    return ddl


def _stamp() -> Any:
    return _alembic_version.insert().values(version_num=sa.bindparam("v_version_num"))


def _fence(run_cols: tuple[str, ...]) -> Any:
    r = t.runs
    return (
        r.update()
        .where(r.c.id == sa.bindparam("k_id"), r.c.epoch == sa.bindparam("k_epoch"))
        .values({c: sa.bindparam(f"v_{c}") for c in ("lease_expires", *run_cols)})
    )


def _instance_update(cols: tuple[str, ...]) -> Any:
    ti = t.task_instances
    return (
        ti.update()
        .where(ti.c.run_id == sa.bindparam("k_run_id"), ti.c.id == sa.bindparam("k_id"))
        .values({c: sa.bindparam(f"v_{c}") for c in cols})
    )


def _attempt_update(cols: tuple[str, ...]) -> Any:
    a = t.attempts
    return (
        a.update()
        .where(
            a.c.run_id == sa.bindparam("k_run_id"),
            a.c.instance_id == sa.bindparam("k_instance_id"),
            a.c.number == sa.bindparam("k_number"),
        )
        .values({c: sa.bindparam(f"v_{c}") for c in cols})
    )


# -- row helpers ------------------------------------------------------------------------------
def _shapes(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[str, ...], list[tuple[Any, ...]]]:
    """Rows (dicts: ``keys`` then the columns they change) as tuples, grouped by their columns:
    one statement per group. The driver builds every row of one kind alike, so groups are few."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    n = len(keys)
    for row in rows:
        shape = tuple(row)
        if shape[:n] != keys:
            row = {**{k: row[k] for k in keys}, **{k: v for k, v in row.items() if k not in keys}}
            shape = tuple(row)
        group = groups.get(shape)
        if group is None:
            group = groups[shape] = []
        group.append(tuple(row.values()))
    return groups


def _run_row(r: RunRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.pipeline,
        r.target,
        json.dumps(r.params),
        r.key,
        r.state,
        r.workdir,
        r.created_at,
        r.started_at,
        r.ended_at,
        r.error,
        r.owner,
        r.epoch,
        r.lease_expires,
        r.total,
    )


def _run_record(row: Any, counts: dict[str, int]) -> RunRecord:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    return RunRecord(**d, counts=counts)


def _instance_row(r: InstanceRecord, seq: int) -> tuple[Any, ...]:
    return (
        r.run_id,
        r.id,
        seq,
        r.task,
        r.label,
        _dumps(r.params),
        _dumps(r.upstream),
        r.state,
        r.attempts,
        r.failures,
        r.lost,
        r.not_before,
        r.priority,
        _dumps(r.targets),
        r.result,
        r.error,
        r.started_at,
        r.ended_at,
    )


def _dumps(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "[]"  # most instances: no upstream, no targets
    return json.dumps(value)


def _loads(text: str) -> Any:
    return [] if text == "[]" else {} if text == "{}" else json.loads(text)


def _instance_record(row: Sequence[Any]) -> InstanceRecord:
    """An instance from a row of every column but ``seq``, in the table's order."""
    (run_id, iid, task, label, params, upstream, state, attempts, failures, lost, not_before, priority,
     targets, result, error, started_at, ended_at) = row  # fmt: skip
    return InstanceRecord(
        run_id,
        iid,
        task,
        label,
        _loads(params),
        _loads(upstream),
        state,
        attempts,
        failures,
        lost,
        not_before,
        priority,
        _loads(targets),
        result,
        error,
        started_at,
        ended_at,
    )


def _attempt_row(a: AttemptRecord) -> tuple[Any, ...]:
    return (
        a.run_id,
        a.instance_id,
        a.number,
        a.state,
        a.started_at,
        a.ended_at,
        a.error,
        a.log_path,
        a.worker,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives the crash of any process (no fsync per commit; the
    # WAL is synced at checkpoints). Only a power cut can lose the last commits.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(os.environ.get('CONVEYOR_BUSY_TIMEOUT_MS', '10000'))}")
    cur.close()
