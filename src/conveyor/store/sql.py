"""The store on SQLAlchemy Core: SQLite (WAL) by default; the only package that knows SQL.

The driver's group commit and the reads and writes that scale with the size of a run (creating
its instances, reading them back) run statements compiled once per process for the dialect
(``statements``), straight on a DBAPI cursor with ``executemany``, their rows as plain tuples
(``rows``): building and compiling Core statements per call cost several times more than the
database work. A thread copies SQLite's log into the database meanwhile (``checkpoint``).
Everything else goes through Core.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError as SAArgumentError
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

from conveyor import ids
from conveyor.errors import RunBusy, RunExists, RunNotFound, SchemaError, StaleEpochError, StoreError
from conveyor.store import schema as t
from conveyor.store import statements
from conveyor.store.attempts import Attempts
from conveyor.store.backfilling import Backfills
from conveyor.store.cache import CacheEntries
from conveyor.store.changes import Changes
from conveyor.store.checkpoint import Checkpointer
from conveyor.store.claims import Claims
from conveyor.store.connection import (
    HELD_CONNECTIONS,
    PING_AFTER,
    Transaction,
    alive,
    failure,
    postgresql_session,
    safe_url,
    sqlite_pragmas,
)
from conveyor.store.daemons import Daemons
from conveyor.store.keys import Keys
from conveyor.store.leases import Leases, stale_partition
from conveyor.store.ledger import Ledger
from conveyor.store.people import People
from conveyor.store.provenance import Provenances
from conveyor.store.records import (
    AttemptRecord,
    Batch,
    Holder,
    InstanceRecord,
    PartitionRecord,
    RunRecord,
    TransitionRecord,
)
from conveyor.store.rows import (
    attempt_row,
    instance_record,
    instance_row,
    run_record,
    run_row,
    shapes,
)
from conveyor.store.statements import Statement
from conveyor.store.stats import Stats

T = TypeVar("T")


_MIGRATIONS = Path(__file__).with_name("migrations")

#: The PostgreSQL advisory lock that processes creating the schema of a new database take.
CREATE_LOCK = 0x636F6E7665796F72  # "conveyor"


class SqlStore(
    Leases,
    Claims,
    Attempts,
    Daemons,
    Backfills,
    Changes,
    Stats,
    Keys,
    People,
    Ledger,
    Provenances,
    CacheEntries,
):
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
        if self.dialect != "sqlite":
            kwargs["pool_pre_ping"] = True  # a server restart leaves dead connections in the pool
        fresh = False
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            db = Path(parsed.database)
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
                fresh = not db.exists() or db.stat().st_size == 0
            except OSError as exc:
                raise StoreError(
                    f"cannot open store {safe_url(url)}: {exc.strerror or exc}; give a --db path in a "
                    "directory you can write"
                ) from None
        try:
            self.engine: Engine = sa.create_engine(url, **kwargs)
        except (NoSuchModuleError, ImportError, SAArgumentError) as exc:
            raise StoreError(f"cannot open store {safe_url(url)}: {exc}") from None
        self._checkpointer: Checkpointer | None = None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", sqlite_pragmas)
            self._checkpointer = Checkpointer(self.engine)
        elif self.dialect == "postgresql":
            event.listen(self.engine, "connect", postgresql_session)
        self._sql: dict[Hashable, Statement] = {}
        self._local = threading.local()
        self._created: dict[str, list[InstanceRecord]] = {}  # runs this store just created
        self._held: list[Any] = []
        self._held_lock = threading.Lock()
        dbapi = self.engine.dialect.loaded_dbapi
        self._dbapi_error: type[Exception] = getattr(dbapi, "Error", Exception)
        self._integrity_error: type[Exception] = getattr(dbapi, "IntegrityError", self._dbapi_error)
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
            raise StoreError(failure(self.url, msg)) from None
        except SQLAlchemyError as exc:
            raise StoreError(f"store {safe_url(self.url)}: {exc}") from None

    def _cursor(self) -> Transaction:
        """A DBAPI cursor in one transaction, committed when the block ends without error.

        The first threads to ask keep a connection checked out of the pool for these (the group
        commit runs hundreds of times a second; a checkout and check-in each time cost more than
        a small commit); ``close()`` returns them. Other threads check one out per call.
        """
        return Transaction(self)

    def _connection(self) -> tuple[Any, bool]:
        """This thread's kept connection, or one from the pool; and whether it is kept."""
        local = self._local
        raw = getattr(local, "raw", None)
        if raw is not None:
            now = time.monotonic()
            idle = now - local.used
            local.used = now
            if idle < PING_AFTER or self.dialect == "sqlite" or alive(raw, self._dbapi_error):
                return raw, True
            self._broken(raw)  # the server restarted meanwhile: a fresh one, checked by the pool
        raw = self.engine.raw_connection()
        with self._held_lock:
            keep = len(self._held) < HELD_CONNECTIONS
            if keep:
                self._held.append(raw)
                local.raw = raw
                local.used = time.monotonic()
        return raw, keep

    def _broken(self, raw: Any) -> None:
        """Forget a kept connection that failed to roll back; the next transaction gets another."""
        if getattr(self._local, "raw", None) is raw:
            self._local.raw = None
            with self._held_lock:
                if raw in self._held:
                    self._held.remove(raw)
        raw.invalidate()

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, self._dbapi_error):
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return StoreError(failure(self.url, msg))
        if isinstance(exc, SQLAlchemyError):
            return StoreError(f"store {safe_url(self.url)}: {exc}")
        return exc

    def _stmt(
        self,
        key: Hashable,
        build: Callable[[], Any],
        order: Sequence[str],
        column_keys: Sequence[str] | None = None,
    ) -> Statement:
        found = self._sql.get(key)
        if found is None:
            found = self._sql[key] = statements.statement(self.engine.dialect, key, build, order, column_keys)
        return found

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._tx() as conn:
            return fn(conn)

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
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
        if rev is None and migrate:
            # Perhaps empty: create it under a lock, or find that another process just did.
            self._create()
            rev = self.revision()
        if rev == t.SCHEMA_REVISION:
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
        """An empty database gets the current schema at once, stamped with its revision; a
        database with tables is left as it is (``_check_schema`` judges it).

        The migrations build exactly ``schema.metadata`` (a test compares the two), so creating it
        directly is the same as migrating from nothing, without loading Alembic. Processes that
        open a new store at the same moment: one creates it under a lock (SQLite's write lock,
        a PostgreSQL advisory lock), the others wait for the lock and then find it created.
        """
        if self.dialect == "sqlite":
            with self._cursor() as cur:
                cur.execute("BEGIN IMMEDIATE")  # the write lock first: the others wait here
                cur.execute("SELECT count(*) FROM sqlite_master")
                empty = cur.fetchone()[0] == 0
                if empty:  # DDL inside the transaction: nobody sees half a schema
                    for ddl in statements.schema_ddl(self.engine.dialect):
                        cur.execute(ddl)
                    stamp = self._stmt("stamp", statements.stamp, ("version_num",))
                    cur.execute(stamp.text, stamp.one((t.SCHEMA_REVISION,)))
            if not empty:
                self._check_schema(migrate=False)
            return
        with self._tx() as conn:
            if self.dialect == "postgresql":  # held until this transaction ends
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK})
            if not sa.inspect(conn).get_table_names():  # read after the lock: what others committed
                t.metadata.create_all(conn)
                statements.alembic_version.create(conn)
                conn.execute(statements.stamp(), {"v_version_num": t.SCHEMA_REVISION})

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
    def create_run(
        self,
        run: RunRecord,
        instances: Sequence[InstanceRecord],
        partitions: Sequence[PartitionRecord] = (),
    ) -> None:
        """Create the run with its instances (and, submitted, its partitions) in one transaction."""
        with self._cursor() as cur:
            self._insert_run(cur, run, instances, partitions)
        if all(r.untouched for r in instances):  # the driver reads them back at once: see instances()
            self._created[run.id] = list(instances)

    def _insert_run(
        self,
        cur: Any,
        run: RunRecord,
        instances: Sequence[InstanceRecord],
        partitions: Sequence[PartitionRecord],
    ) -> None:
        """Insert the run; ``RunExists`` if an unfinished run has its key (the key is unique
        among unfinished runs: of two processes creating the same run, one wins)."""
        ins = self._stmt("insert_run", t.runs.insert, statements.RUN_COLUMNS, statements.RUN_COLUMNS)
        try:
            cur.execute(ins.text, ins.one(run_row(run)))
        except self._integrity_error as exc:
            if "key" not in str(exc):  # runs.key (SQLite), ux_runs_open_key (PostgreSQL)
                raise
            raise RunExists(
                f"an unfinished run of {run.pipeline} with the same parameters exists in "
                f"{safe_url(self.url)}; follow it, or cancel it to start anew",
                None,
            ) from None
        self._insert_instances(cur, instances, start=0)
        if partitions:
            self._insert_partitions(cur, partitions)

    def add_instances(self, run_id: str, instances: Sequence[InstanceRecord]) -> None:
        """Add instances to an existing run (its pipeline's graph grew since it started)."""
        self._created.pop(run_id, None)
        ti, r = t.task_instances, t.runs
        count = self._stmt(
            "count_instances",
            lambda: sa.select(sa.func.count()).where(ti.c.run_id == sa.bindparam("k_run_id")),
            ("run_id",),
        )
        grow = self._stmt(
            "grow_run",
            lambda: (
                r.update()
                .where(r.c.id == sa.bindparam("k_id"))
                .values(total=r.c.total + sa.bindparam("v_more"))
            ),
            ("more", "id"),
        )
        with self._cursor() as cur:
            cur.execute(count.text, count.one((run_id,)))
            seq = cur.fetchone()[0]
            cur.execute(grow.text, grow.one((len(instances), run_id)))
            self._insert_instances(cur, instances, start=seq)

    def _insert_instances(self, cur: Any, rows: Sequence[InstanceRecord], start: int) -> None:
        if rows:
            ins = self._stmt(
                "insert_instance",
                t.task_instances.insert,
                statements.INSTANCE_COLUMNS,
                statements.INSTANCE_COLUMNS,
            )
            cur.executemany(ins.text, ins.rows([instance_row(r, start + i) for i, r in enumerate(rows)]))

    def get_run(self, run_id: str, *, teams: Sequence[str] | None = None) -> RunRecord:
        """The run with this id, or the only one whose id starts with it; ``teams``: only runs of
        these teams are looked at (the others do not exist for this caller)."""
        if not ids.plausible(run_id):  # never asked of the store: no LIKE of 70,000 characters
            raise RunNotFound(f"no run {ids.shown(run_id)!r}: {ids.RULE}; see: conveyor runs")

        def read(conn: Connection) -> RunRecord:
            seen = sa.true() if teams is None else t.runs.c.team.in_(list(teams))
            row = conn.execute(sa.select(t.runs).where(t.runs.c.id == run_id, seen)).mappings().first()
            if row is None and run_id:
                found = (
                    conn.execute(
                        sa.select(t.runs)
                        .where(t.runs.c.id.startswith(run_id, autoescape=True), seen)
                        .limit(2)
                    )
                    .mappings()
                    .all()
                )
                if len(found) == 2:
                    raise RunNotFound(f"run id {run_id!r} is ambiguous; give more of it")
                row = found[0] if found else None
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {safe_url(self.url)}; see: conveyor runs")
            return run_record(row, self._counts(conn, row["id"]))

        return self._read(read)

    def latest_run(self, key: str) -> RunRecord | None:
        r = t.runs
        latest = self._stmt(
            "latest_run",
            lambda: (
                sa.select(r).where(r.c.key == sa.bindparam("k_key")).order_by(r.c.created_at.desc()).limit(1)
            ),
            ("key",),
        )
        with self._cursor() as cur:
            cur.execute(latest.text, latest.one((key,)))
            row = cur.fetchone()
            if row is None:
                return None
            found = dict(zip(statements.RUN_COLUMNS, row, strict=True))
            return run_record(found, self._raw_counts(cur, found["id"]))

    def _untouched(self, run_id: str, total: int) -> bool:
        """Does the run still have ``total`` instances, every one as created: pending, never tried?"""
        ti = t.task_instances
        changed = sa.or_(
            ti.c.state != "pending",
            ti.c.attempts != 0,
            ti.c.failures != 0,
            ti.c.lost != 0,
            ti.c.not_before != 0,
            ti.c.result.is_not(None),
            ti.c.error.is_not(None),
            ti.c.started_at.is_not(None),
            ti.c.ended_at.is_not(None),
        )
        probe = self._stmt(
            "untouched",
            lambda: sa.select(sa.func.count(), sa.func.count().filter(changed)).where(
                ti.c.run_id == sa.bindparam("k_run_id")
            ),
            ("run_id",),
        )
        with self._cursor() as cur:
            cur.execute(probe.text, probe.one((run_id,)))
            rows, touched = cur.fetchone()
        return bool(rows == total and not touched)

    def _raw_counts(self, cur: Any, run_id: str) -> dict[str, int]:
        ti = t.task_instances
        counts = self._stmt(
            "counts",
            lambda: (
                sa.select(ti.c.state, sa.func.count())
                .where(ti.c.run_id == sa.bindparam("k_run_id"))
                .group_by(ti.c.state)
            ),
            ("run_id",),
        )
        cur.execute(counts.text, counts.one((run_id,)))
        return {str(st): int(n) for st, n in cur.fetchall()}

    def list_runs(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        pipeline: str | None = None,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
        teams: Sequence[str] | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, filtered by pipeline, state and creation time (``since`` included,
        ``until`` excluded), and by team (``teams``; None: every run)."""

        def read(conn: Connection) -> list[RunRecord]:
            q = _runs_where(sa.select(t.runs), pipeline, state, since, until, teams)
            q = q.order_by(t.runs.c.created_at.desc(), t.runs.c.id.desc()).limit(limit).offset(offset)
            rows = conn.execute(q).mappings().all()
            return [run_record(r, self._counts(conn, r["id"])) for r in rows]

        return self._read(read)

    def count_runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        since: float | None = None,
        until: float | None = None,
        teams: Sequence[str] | None = None,
    ) -> int:
        q = _runs_where(sa.select(sa.func.count()).select_from(t.runs), pipeline, state, since, until, teams)
        return int(self._read(lambda conn: conn.execute(q).scalar_one()))

    def _counts(self, conn: Connection, run_id: str) -> dict[str, int]:
        ti = t.task_instances
        rows = conn.execute(
            sa.select(ti.c.state, sa.func.count()).where(ti.c.run_id == run_id).group_by(ti.c.state)
        ).all()
        return {str(s): int(n) for s, n in rows}

    # -- instances, attempts, history ----------------------------------------------------------
    def instances(self, run_id: str) -> list[InstanceRecord]:
        created = self._created.pop(run_id, None)
        if created is not None and self._untouched(run_id, len(created)):
            return created  # just created here, and nobody has changed a row since
        ti = t.task_instances
        cols = [c for c in statements.INSTANCE_COLUMNS if c != "seq"]
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
        return [instance_record(r) for r in rows]

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

    # -- the group commit ---------------------------------------------------------------------
    def commit(
        self, run_id: str, epoch: int, batch: Batch, *, lease_until: float, partition: int | None = None
    ) -> dict[str, Holder]:
        """Write one batch in one transaction, fenced by the lease epoch of the run, or of the
        run's ``partition`` (a submitted run: its run columns change only as partitions end)."""
        if self._created:
            self._created.pop(run_id, None)
        run_cols = tuple(batch.run)
        if partition is None:
            fence = self._stmt(
                ("fence", run_cols),
                lambda: statements.fence(run_cols),
                ("lease_expires", *run_cols, "id", "epoch"),
            )
            fenced = fence.one((lease_until, *batch.run.values(), run_id, epoch))
        else:
            assert not run_cols, "a partition's driver does not write the run's columns"
            fence = self._stmt(
                "fence_partition", statements.fence_partition, ("lease_expires", "run_id", "number", "epoch")
            )
            fenced = fence.one((lease_until, run_id, partition, epoch))
        with self._cursor() as cur:
            cur.execute(fence.text, fenced)
            if cur.rowcount != 1:
                if partition is not None:
                    raise stale_partition(run_id, partition, epoch)
                raise StaleEpochError(
                    f"run {run_id}: the lease (epoch {epoch}) was taken over by another process; "
                    "this one stops acting for it"
                )
            sql = self._sql
            if batch.instances:
                for shape, rows in shapes(batch.instances, ("id",), run_id).items():
                    upd = sql.get(shape) or self._stmt(
                        shape,
                        functools.partial(statements.instance_update, shape[1:]),
                        (*shape[1:], "run_id", "id"),
                    )
                    cur.executemany(upd.text, upd.rows(rows))
            if batch.attempts_started:
                ins = self._stmt(
                    "insert_attempt",
                    t.attempts.insert,
                    statements.ATTEMPT_COLUMNS,
                    statements.ATTEMPT_COLUMNS,
                )
                cur.executemany(ins.text, ins.rows([attempt_row(a) for a in batch.attempts_started]))
            if batch.attempts_ended:
                for shape, rows in shapes(batch.attempts_ended, ("instance_id", "number"), run_id).items():
                    end = sql.get(shape) or self._stmt(
                        shape,
                        functools.partial(statements.attempt_update, shape[2:]),
                        (*shape[2:], "run_id", "instance_id", "number"),
                    )
                    cur.executemany(end.text, end.rows(rows))
            if batch.transitions:
                tr = self._stmt(
                    "insert_transition",
                    t.transitions.insert,
                    statements.TRANSITION_COLUMNS,
                    statements.TRANSITION_COLUMNS,
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
            held = (
                self._claims_in(
                    cur, run_id, batch.claim_owner, time.time(), batch.claim_start, batch.claim_end
                )
                if batch.claim_owner is not None
                else {}
            )
        if self._checkpointer is not None:
            self._checkpointer.committed()
        return held


def _runs_where(
    q: Any,
    pipeline: str | None,
    state: str | None,
    since: float | None,
    until: float | None,
    teams: Sequence[str] | None = None,
) -> Any:
    r = t.runs
    if teams is not None:
        q = q.where(r.c.team.in_(list(teams)))
    if pipeline:
        q = q.where(r.c.pipeline == pipeline)
    if state:
        q = q.where(r.c.state == state)
    if since is not None:
        q = q.where(r.c.created_at >= since)
    if until is not None:
        q = q.where(r.c.created_at < until)
    return q
