"""The store on SQLAlchemy Core: SQLite (WAL) by default; the only module that knows SQL."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError as SAArgumentError
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

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


def safe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except SAArgumentError:
        return url


class SqlStore:
    """Runs, task instances, attempts and transitions in a SQL database."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except SAArgumentError:
            raise StoreError(
                f"store URL {url!r} is not a database URL; use sqlite:///path/conveyor.db"
            ) from None
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = sa.create_engine(url, **kwargs)
        except (NoSuchModuleError, ImportError, SAArgumentError) as exc:
            raise StoreError(f"cannot open store {safe_url(url)}: {exc}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
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

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._tx() as conn:
            return fn(conn)

    def close(self) -> None:
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
            self.upgrade()
            return
        if rev is None:
            raise SchemaError(
                f"store {safe_url(self.url)} has tables but no Conveyor schema version; "
                "point --db at an empty database or a Conveyor store"
            )
        raise SchemaError(
            f"store {safe_url(self.url)} has schema {rev}, this Conveyor needs "
            f"{t.SCHEMA_REVISION}; run: conveyor db upgrade --db '{safe_url(self.url)}'"
        )

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
        with self._tx() as conn:
            conn.execute(t.runs.insert(), [_run_row(run)])
            self._insert_instances(conn, instances, start=0)

    def add_instances(self, run_id: str, instances: Sequence[InstanceRecord]) -> None:
        """Add instances to an existing run (its pipeline's graph grew since it started)."""
        with self._tx() as conn:
            seq = conn.execute(
                sa.select(sa.func.count()).where(t.task_instances.c.run_id == run_id)
            ).scalar_one()
            self._insert_instances(conn, instances, start=seq)
            conn.execute(
                t.runs.update().where(t.runs.c.id == run_id).values(total=t.runs.c.total + len(instances))
            )

    def _insert_instances(self, conn: Connection, rows: Sequence[InstanceRecord], start: int) -> None:
        if rows:
            conn.execute(t.task_instances.insert(), [_instance_row(r, start + i) for i, r in enumerate(rows)])

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
        def read(conn: Connection) -> list[InstanceRecord]:
            ti = t.task_instances
            rows = conn.execute(sa.select(ti).where(ti.c.run_id == run_id).order_by(ti.c.seq)).mappings()
            return [_instance_record(r) for r in rows]

        return self._read(read)

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
        with self._tx() as conn:
            fenced = conn.execute(
                t.runs.update()
                .where(t.runs.c.id == run_id, t.runs.c.epoch == epoch)
                .values(lease_expires=lease_until, **batch.run)
            ).rowcount
            if fenced != 1:
                raise StaleEpochError(
                    f"run {run_id}: the lease (epoch {epoch}) was taken over by another process; "
                    "this one stops acting for it"
                )
            if batch.instances:
                self._update_instances(conn, run_id, batch.instances)
            if batch.attempts_started:
                conn.execute(t.attempts.insert(), [_attempt_row(a) for a in batch.attempts_started])
            if batch.attempts_ended:
                a = t.attempts
                for cols in _group_by_keys(batch.attempts_ended):
                    stmt = (
                        a.update()
                        .where(
                            a.c.run_id == run_id,
                            a.c.instance_id == sa.bindparam("b_instance"),
                            a.c.number == sa.bindparam("b_number"),
                        )
                        .values({c: sa.bindparam(f"v_{c}") for c in cols})
                    )
                    conn.execute(
                        stmt, [_bind(row, cols) for row in batch.attempts_ended if _keys(row) == cols]
                    )
            if batch.transitions:
                conn.execute(
                    t.transitions.insert(),
                    [
                        {
                            "run_id": run_id,
                            "instance_id": tr.instance_id,
                            "old": tr.old,
                            "new": tr.new,
                            "at": tr.at,
                            "cause": tr.cause,
                            "attempt": tr.attempt,
                        }
                        for tr in batch.transitions
                    ],
                )

    def _update_instances(self, conn: Connection, run_id: str, rows: list[dict[str, Any]]) -> None:
        ti = t.task_instances
        for cols in _group_by_keys(rows):
            stmt = (
                ti.update()
                .where(ti.c.run_id == run_id, ti.c.id == sa.bindparam("b_id"))
                .values({c: sa.bindparam(f"v_{c}") for c in cols})
            )
            conn.execute(stmt, [_bind(r, cols, key="id") for r in rows if _keys(r) == cols])


# -- row helpers ------------------------------------------------------------------------------
def _keys(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(k for k in row if k not in ("id", "instance_id", "number")))


def _group_by_keys(rows: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return list(dict.fromkeys(_keys(r) for r in rows))


def _bind(row: dict[str, Any], cols: tuple[str, ...], key: str = "") -> dict[str, Any]:
    out = {f"v_{c}": row[c] for c in cols}
    if key:
        out["b_id"] = row[key]
    else:
        out["b_instance"] = row["instance_id"]
        out["b_number"] = row["number"]
    return out


def _run_row(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "pipeline": r.pipeline,
        "target": r.target,
        "params": json.dumps(r.params),
        "key": r.key,
        "state": r.state,
        "workdir": r.workdir,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "error": r.error,
        "owner": r.owner,
        "epoch": r.epoch,
        "lease_expires": r.lease_expires,
        "total": r.total,
    }


def _run_record(row: Any, counts: dict[str, int]) -> RunRecord:
    d = dict(row)
    d["params"] = json.loads(d["params"])
    return RunRecord(**d, counts=counts)


def _instance_row(r: InstanceRecord, seq: int) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "id": r.id,
        "seq": seq,
        "task": r.task,
        "label": r.label,
        "params": json.dumps(r.params),
        "upstream": json.dumps(r.upstream),
        "state": r.state,
        "attempts": r.attempts,
        "failures": r.failures,
        "lost": r.lost,
        "not_before": r.not_before,
        "priority": r.priority,
        "targets": json.dumps(r.targets),
        "result": r.result,
        "error": r.error,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
    }


def _instance_record(row: Any) -> InstanceRecord:
    d = dict(row)
    d.pop("seq")
    for k in ("params", "upstream", "targets"):
        d[k] = json.loads(d[k])
    return InstanceRecord(**d)


def _attempt_row(a: AttemptRecord) -> dict[str, Any]:
    return {
        "run_id": a.run_id,
        "instance_id": a.instance_id,
        "number": a.number,
        "state": a.state,
        "started_at": a.started_at,
        "ended_at": a.ended_at,
        "error": a.error,
        "log_path": a.log_path,
        "worker": a.worker,
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives the crash of any process (no fsync per commit; the
    # WAL is synced at checkpoints). Only a power cut can lose the last commits.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(os.environ.get('CONVEYOR_BUSY_TIMEOUT_MS', '10000'))}")
    cur.close()
