"""The store's side of several schedulers: partition leases, the scheduler registry, and the
results that runners write themselves.

A submitted run's graph is split into partitions (``conveyor.partitions``). A scheduler claims
one whose lease is free or expired and whose upstream partitions are done, with the epoch
incremented; every later write for it (``SqlStore.commit`` with ``partition=``) is fenced by
that epoch, so a scheduler that lost its lease (it stalled past the expiry) has its writes
refused. The runner inside an attempt records the attempt's end itself, conditioned on the
attempt still being current, so a result survives the scheduler that launched it: the first
completion wins, a superseded attempt's is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.errors import NameInUse, StaleEpochError, StoreError
from conveyor.partitions import STUCK, blocked, run_state
from conveyor.store import schema as t
from conveyor.store import statements
from conveyor.store.records import PartitionRecord, RunRecord, SchedulerRecord
from conveyor.store.rows import run_record

if TYPE_CHECKING:
    from conveyor.store.statements import Statement

#: Open partitions a claim looks at, oldest run first: enough that partitions waiting for
#: others (a long chain cut into slices) do not hide the claimable ones of later runs.
CANDIDATES = 1000


@dataclass(frozen=True, slots=True)
class Claim:
    run: RunRecord
    partition: PartitionRecord  # with the new owner and epoch
    takeover: bool  # the lease had expired under another owner


@dataclass(frozen=True, slots=True)
class AttemptStatus:
    """An adopted attempt as the store sees it (see ``Leases.attempt_status``)."""

    instance_id: str
    number: int
    state: str  # running | succeeded | failed | lost | cancelled
    started_at: float
    heartbeat: float | None
    error: str | None
    result: str | None


class Leases:
    """Mixed into ``SqlStore``: everything that several schedulers share."""

    url: str
    dialect: str

    if TYPE_CHECKING:

        def _tx(self) -> AbstractContextManager[Connection]: ...
        def _cursor(self) -> AbstractContextManager[Any]: ...
        def _stmt(
            self,
            key: Hashable,
            build: Callable[[], Any],
            order: Sequence[str],
            column_keys: Sequence[str] | None = None,
        ) -> Statement: ...

    # -- partitions ---------------------------------------------------------------------------
    def _insert_partitions(self, cur: Any, parts: Sequence[PartitionRecord]) -> None:
        cols = ("run_id", "number", "size", "needs", "state")
        ins = self._stmt("insert_partition", lambda: t.partitions.insert(), cols, cols)
        cur.executemany(
            ins.text, ins.rows([(x.run_id, x.number, x.size, json.dumps(x.needs), x.state) for x in parts])
        )

    def partitions(self, run_id: str) -> list[PartitionRecord]:
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(t.partitions).where(t.partitions.c.run_id == run_id).order_by(t.partitions.c.number)
            ).mappings()
            return [_partition(r) for r in rows]

    def claim(self, owner: str, ttl: float, *, now: float | None = None) -> Claim | None:
        """Take the lease of the first partition (oldest run first) that is open, free or
        expired, and whose upstream partitions are done; None if there is none."""
        now = time.time() if now is None else now
        p, r = t.partitions, t.runs
        free = sa.or_(p.c.owner.is_(None), p.c.lease_expires < now)
        candidates = (
            sa.select(p)
            .join(r, r.c.id == p.c.run_id)
            .where(p.c.state == "open", free, r.c.cancel_requested.is_(None))
            .order_by(r.c.created_at, p.c.number)
            .limit(CANDIDATES)
        )
        skip_locked = self.dialect == "postgresql"
        if skip_locked:
            self._fence_off_stalled(now, ttl)
        with self._tx() as conn:
            rows = [_partition(row) for row in conn.execute(candidates).mappings()]
            done: dict[str, set[int]] = {}
            for part in rows:
                if skip_locked:  # lock this one row, or pass it by if another claimer holds it
                    mine = conn.execute(
                        sa.select(p.c.number)
                        .where(p.c.run_id == part.run_id, p.c.number == part.number, p.c.epoch == part.epoch)
                        .with_for_update(skip_locked=True)
                    ).first()
                    if mine is None:
                        continue
                if part.needs:
                    if part.run_id not in done:
                        done[part.run_id] = set(
                            conn.execute(
                                sa.select(p.c.number).where(p.c.run_id == part.run_id, p.c.state == "done")
                            ).scalars()
                        )
                    if not set(part.needs) <= done[part.run_id]:
                        continue
                takeover = part.owner is not None and part.owner != owner
                epoch = part.epoch + 1
                cols: dict[str, Any] = {"owner": owner, "epoch": epoch, "lease_expires": now + ttl}
                if takeover:
                    cols |= {"takeovers": p.c.takeovers + 1, "taken_from": part.owner, "taken_at": now}
                if part.started_at is None:
                    cols["started_at"] = now
                taken = conn.execute(
                    p.update()
                    .where(p.c.run_id == part.run_id, p.c.number == part.number, p.c.epoch == part.epoch)
                    .values(cols)
                )
                if taken.rowcount != 1:
                    continue  # another scheduler took it between our read and this write
                conn.execute(
                    r.update()
                    .where(r.c.id == part.run_id, r.c.state == "pending")
                    .values(state="running", started_at=sa.func.coalesce(r.c.started_at, now))
                )
                run_row = conn.execute(sa.select(r).where(r.c.id == part.run_id)).mappings().one()
                claimed = PartitionRecord(
                    part.run_id,
                    part.number,
                    part.size,
                    part.needs,
                    "open",
                    owner,
                    epoch,
                    now + ttl,
                    part.takeovers + takeover,
                    part.owner if takeover else part.taken_from,
                    now if takeover else part.taken_at,
                    part.started_at or now,
                )
                return Claim(run_record(run_row, {}), claimed, takeover)
        return None

    def _fence_off_stalled(self, now: float, ttl: float) -> None:
        """An owner that stalled inside a transaction (SIGSTOP, a frozen VM) row-locks its
        partition, and the claim above skips locked rows: end the session of such an owner once
        its lease expired and its transaction is older than a lease (a healthy one lasts ms).
        Schedulers must connect as the same role (or one with ``pg_signal_backend``); without
        the right, the stalled owner's lock is released when its process or connection ends."""
        try:
            self._terminate_stalled(now, ttl)
        except StoreError:
            pass

    def _terminate_stalled(self, now: float, ttl: float) -> None:
        with self._tx() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(l.pid) FROM partitions p"
                    " JOIN pg_locks l ON l.locktype = 'transactionid' AND l.granted"
                    " AND l.mode = 'ExclusiveLock' AND l.transactionid = p.xmax"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE p.state = 'open' AND p.owner IS NOT NULL AND p.lease_expires < :now"
                    " AND a.xact_start < clock_timestamp() - make_interval(secs => :ttl)"
                    " AND l.pid <> pg_backend_pid()"
                ),
                {"now": now, "ttl": ttl},
            )

    def end_partition(
        self, run_id: str, number: int, epoch: int, state: str, error: str | None = None
    ) -> str | None:
        """Record the partition's end (fenced by ``epoch``); mark the partitions that needed a
        failed one as blocked; end the run when no partition is left open. Returns the run's
        final state if this ended it."""
        p, r = t.partitions, t.runs
        now = time.time()
        with self._tx() as conn:
            # The fenced write first: on SQLite it takes the write lock before anything is read.
            ended = conn.execute(
                p.update()
                .where(p.c.run_id == run_id, p.c.number == number, p.c.epoch == epoch)
                .values(state=state, ended_at=now, error=error, owner=None, lease_expires=None)
            )
            if ended.rowcount != 1:
                raise stale_partition(run_id, number, epoch)
            # One ender at a time per run, so the last one sees every other end (PostgreSQL).
            conn.execute(sa.select(r.c.id).where(r.c.id == run_id).with_for_update()).all()
            parts = [
                _partition(row) for row in conn.execute(sa.select(p).where(p.c.run_id == run_id)).mappings()
            ]
            stuck = blocked({x.number: (x.state, x.needs) for x in parts})
            if stuck:
                conn.execute(
                    p.update()
                    .where(p.c.run_id == run_id, p.c.number.in_(stuck), p.c.state == "open")
                    .values(state="blocked", ended_at=now, error="an upstream partition did not succeed")
                )
            final = run_state("blocked" if x.number in stuck else x.state for x in parts)
            if final is None:
                return None
            first_error = next(
                (x.error for x in parts if x.state in ("failed", "cancelled") and x.error), None
            )
            conn.execute(
                r.update().where(r.c.id == run_id).values(state=final, ended_at=now, error=first_error)
            )
            return final

    def lease_of(self, run_id: str, number: int) -> tuple[int, float | None, str] | None:
        """The partition's epoch, lease expiry and state (a runner checks its scheduler's lease)."""
        p = t.partitions
        with self._tx() as conn:
            row = conn.execute(
                sa.select(p.c.epoch, p.c.lease_expires, p.c.state).where(
                    p.c.run_id == run_id, p.c.number == number
                )
            ).first()
        return None if row is None else (int(row[0]), row[1], str(row[2]))

    def release_partition(self, run_id: str, number: int, epoch: int) -> None:
        """Give the lease up (the scheduler is stopping): another scheduler may claim it now."""
        p = t.partitions
        with self._tx() as conn:
            conn.execute(
                p.update()
                .where(p.c.run_id == run_id, p.c.number == number, p.c.epoch == epoch)
                .values(owner=None, lease_expires=None)
            )

    def request_cancel(self, run_id: str, now: float | None = None) -> str:
        """Ask a submitted run to stop: its partitions that nobody drives end cancelled now, the
        drivers of the others cancel their attempts (``cancel_requested``). Returns the run's
        state afterwards."""
        now = time.time() if now is None else now
        p, r = t.partitions, t.runs
        with self._tx() as conn:
            conn.execute(
                r.update()
                .where(r.c.id == run_id, r.c.state.in_(("pending", "running")))
                .values(cancel_requested=now)
            )
            conn.execute(
                p.update()
                .where(
                    p.c.run_id == run_id,
                    p.c.state == "open",
                    sa.or_(p.c.owner.is_(None), p.c.lease_expires < now),
                )
                .values(state="cancelled", ended_at=now, error="cancelled", owner=None, lease_expires=None)
            )
            conn.execute(sa.select(r.c.id).where(r.c.id == run_id).with_for_update()).all()
            final = run_state(conn.execute(sa.select(p.c.state).where(p.c.run_id == run_id)).scalars())
            if final is not None:
                conn.execute(
                    r.update()
                    .where(r.c.id == run_id, r.c.state.in_(("pending", "running")))
                    .values(state=final, ended_at=now, error="cancelled by conveyor cancel")
                )
            return str(conn.execute(sa.select(r.c.state).where(r.c.id == run_id)).scalar_one())

    def cancel_requested(self, run_id: str) -> bool:
        r = t.runs
        with self._tx() as conn:
            return conn.execute(sa.select(r.c.cancel_requested).where(r.c.id == run_id)).scalar() is not None

    def reopen(self, run_id: str) -> int:
        """Open a submitted run's failed, blocked and cancelled partitions again (``retry``);
        the schedulers pick them up. Returns how many were reopened."""
        p, r = t.partitions, t.runs
        with self._tx() as conn:
            n = conn.execute(
                p.update()
                .where(p.c.run_id == run_id, p.c.state.in_(STUCK))
                .values(state="open", ended_at=None, error=None, owner=None, lease_expires=None)
            ).rowcount
            if n:
                conn.execute(
                    r.update()
                    .where(r.c.id == run_id)
                    .values(state="pending", ended_at=None, error=None, cancel_requested=None)
                )
            return int(n)

    # -- attempts, from the runner and for adoption -------------------------------------------
    def attempt_alive(self, run_id: str, instance_id: str, number: int, now: float) -> bool:
        """The runner's heartbeat (and its check before it starts): False if the attempt is no
        longer current (it was declared lost or cancelled by the scheduler that owns it now)."""
        beat = self._stmt(
            ("current_attempt", "heartbeat"),
            lambda: statements.current_attempt_update(("heartbeat",)),
            ("heartbeat", "run_id", "instance_id", "number"),
        )
        with self._cursor() as cur:
            cur.execute(beat.text, beat.one((now, run_id, instance_id, number)))
            return bool(cur.rowcount == 1)

    def record_attempt(
        self,
        run_id: str,
        instance_id: str,
        number: int,
        state: str,
        *,
        ended_at: float,
        result: str | None = None,
        error: str | None = None,
    ) -> bool:
        """The runner records its attempt's end: only if the attempt is still current, and a
        success marks the instance succeeded with its result. True if it was recorded."""
        ti = t.task_instances
        done = self._stmt(
            "instance_done",
            lambda: (
                ti.update()
                .where(
                    ti.c.run_id == sa.bindparam("k_run_id"),
                    ti.c.id == sa.bindparam("k_id"),
                    ti.c.state == "running",
                    ti.c.attempts == sa.bindparam("k_attempts"),
                )
                .values(
                    state="succeeded",
                    result=sa.bindparam("v_result"),
                    ended_at=sa.bindparam("v_ended_at"),
                    error=None,
                )
            ),
            ("result", "ended_at", "run_id", "id", "attempts"),
        )
        try:
            with self._cursor() as cur:
                if not self._end_current(cur, (run_id, instance_id, number), state, ended_at, error):
                    return False
                if state == "succeeded":
                    cur.execute(done.text, done.one((result, ended_at, run_id, instance_id, number)))
                    if cur.rowcount != 1:
                        raise _Superseded()  # roll the attempt's end back too
                return True
        except _Superseded:
            return False

    def _end_current(
        self, cur: Any, key: tuple[str, str, int], state: str, ended_at: float, error: str | None
    ) -> bool:
        """End the attempt ``key`` (run, instance, number) if it is still running."""
        end = self._stmt(
            ("current_attempt", "end"),
            lambda: statements.current_attempt_update(("state", "ended_at", "error")),
            ("state", "ended_at", "error", "run_id", "instance_id", "number"),
        )
        cur.execute(end.text, end.one((state, ended_at, error, *key)))
        return bool(cur.rowcount == 1)

    def declare_lost(self, run_id: str, instance_id: str, number: int, now: float, reason: str) -> bool:
        """A new owner ends an adopted attempt whose runner went silent, before deciding to run
        it again; False if the runner recorded its end first (then that end counts)."""
        with self._cursor() as cur:
            return self._end_current(cur, (run_id, instance_id, number), "lost", now, reason)

    def attempt_status(self, run_id: str, keys: Sequence[tuple[str, int]]) -> list[AttemptStatus]:
        """Attempts a new owner adopted: still running (and beating), or ended by their runner."""
        a, ti = t.attempts, t.task_instances
        wanted = set(keys)
        out = []
        with self._tx() as conn:
            for chunk in _chunks(sorted({k[0] for k in keys})):
                q = (
                    sa.select(
                        a.c.instance_id,
                        a.c.number,
                        a.c.state,
                        a.c.started_at,
                        a.c.heartbeat,
                        a.c.error,
                        ti.c.result,
                    )
                    .join(ti, sa.and_(ti.c.run_id == a.c.run_id, ti.c.id == a.c.instance_id))
                    .where(a.c.run_id == run_id, a.c.instance_id.in_(chunk))
                )
                out += [AttemptStatus(*row) for row in conn.execute(q) if (row[0], row[1]) in wanted]
        return out

    # -- schedules ------------------------------------------------------------------------------
    def schedule_cursor(self, pipeline: str, now: float) -> float:
        """The schedule's last fired tick; a schedule seen for the first time starts at ``now``
        (its past ticks are not fired)."""
        s = t.schedules
        with self._tx() as conn:
            last = conn.execute(sa.select(s.c.last_tick).where(s.c.pipeline == pipeline)).scalar()
            if last is not None:
                return float(last)
        try:
            with self._tx() as conn:
                conn.execute(s.insert().values(pipeline=pipeline, last_tick=now))
            return now
        except StoreError:  # another scheduler created it at the same moment
            with self._tx() as conn:
                return float(
                    conn.execute(sa.select(s.c.last_tick).where(s.c.pipeline == pipeline)).scalar_one()
                )

    # -- the scheduler registry ---------------------------------------------------------------
    def register_scheduler(self, rec: SchedulerRecord, *, stale_after: float) -> None:
        """Add (or replace) a scheduler; refuse a name that a live scheduler uses."""
        s = t.schedulers
        with self._tx() as conn:
            old = conn.execute(sa.select(s).where(s.c.name == rec.name)).mappings().first()
            if old is not None:
                if old["state"] == "running" and old["heartbeat"] > rec.started_at - stale_after:
                    raise NameInUse(
                        f"a scheduler named {rec.name!r} is running ({old['host']}, pid {old['pid']}); "
                        "give this one another --name"
                    )
                conn.execute(s.delete().where(s.c.name == rec.name))
            conn.execute(s.insert().values(**_fields(rec)))

    def beat(self, name: str, now: float, *, state: str = "running") -> None:
        s = t.schedulers
        with self._tx() as conn:
            conn.execute(s.update().where(s.c.name == name).values(heartbeat=now, state=state))

    def schedulers(self) -> list[tuple[SchedulerRecord, list[PartitionRecord]]]:
        """Every registered scheduler, newest heartbeat first, with the leases it holds."""
        s, p = t.schedulers, t.partitions
        with self._tx() as conn:
            recs = [
                SchedulerRecord(**dict(r))
                for r in conn.execute(sa.select(s).order_by(s.c.heartbeat.desc())).mappings()
            ]
            leases: dict[str, list[PartitionRecord]] = {}
            q = (
                sa.select(p)
                .where(p.c.state == "open", p.c.owner.is_not(None))
                .order_by(p.c.run_id, p.c.number)
            )
            for row in conn.execute(q).mappings():
                leases.setdefault(row["owner"], []).append(_partition(row))
        return [(rec, leases.get(rec.name, [])) for rec in recs]

    def forget_schedulers(self, before: float) -> int:
        """Drop the schedulers silent since ``before`` (stopped, or dead) from the registry."""
        s = t.schedulers
        with self._tx() as conn:
            return int(conn.execute(s.delete().where(s.c.heartbeat < before)).rowcount)


class _Superseded(Exception):
    """The attempt's instance moved on: undo the attempt's end in the same transaction."""


def stale_partition(run_id: str, number: int, epoch: int) -> StaleEpochError:
    return StaleEpochError(
        f"run {run_id} partition {number}: the lease (epoch {epoch}) was taken over by another "
        "scheduler; this one stops acting for it"
    )


def _partition(row: Any) -> PartitionRecord:
    d = dict(row)
    d["needs"] = json.loads(d["needs"])
    return PartitionRecord(**d)


def _fields(rec: SchedulerRecord) -> dict[str, Any]:
    return {f: getattr(rec, f) for f in SchedulerRecord.__slots__}


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
