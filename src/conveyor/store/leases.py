"""The store's leases: a run's (one ``conveyor run``) and its partitions' (several schedulers).

A submitted run's graph is split into partitions (``conveyor.partitions``). A scheduler claims
one whose lease is free or expired and whose upstream partitions are done, with the epoch
incremented; every later write for it (``SqlStore.commit`` with ``partition=``) is fenced by
that epoch, so a scheduler that lost its lease (it stalled past the expiry) has its writes
refused. What runners write is in ``attempts``, the schedulers' registry in ``daemons``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.errors import RunBusy, RunNotFound, StaleEpochError, StoreError
from conveyor.partitions import STUCK, blocked, run_state
from conveyor.store import schema as t
from conveyor.store.connection import safe_url
from conveyor.store.part import Part
from conveyor.store.records import PartitionRecord, RunRecord
from conveyor.store.rows import run_record

#: Open partitions a claim looks at, oldest run first: enough that partitions waiting for
#: others (a long chain cut into slices) do not hide the claimable ones of later runs.
CANDIDATES = 1000


@dataclass(frozen=True, slots=True)
class Claim:
    run: RunRecord
    partition: PartitionRecord  # with the new owner and epoch
    takeover: bool  # the lease had expired under another owner


class Leases(Part):
    """Mixed into ``SqlStore``: the leases of runs (``conveyor run``) and of partitions (the
    schedulers): claiming, fencing, ending, cancelling, reopening."""

    # -- the run's lease (conveyor run) -------------------------------------------------------
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
        r = t.runs
        lease = self._stmt(
            "lease",
            lambda: sa.select(r.c.owner, r.c.epoch, r.c.lease_expires).where(r.c.id == sa.bindparam("k_id")),
            ("id",),
        )
        take = self._stmt(
            "take",
            lambda: (
                r.update()
                .where(r.c.id == sa.bindparam("k_id"), r.c.epoch == sa.bindparam("k_epoch"))
                .values(
                    owner=sa.bindparam("v_owner"),
                    epoch=sa.bindparam("v_new_epoch"),
                    lease_expires=sa.bindparam("v_lease_expires"),
                )
            ),
            ("owner", "new_epoch", "lease_expires", "id", "epoch"),
        )
        with self._cursor() as cur:
            cur.execute(lease.text, lease.one((run_id,)))
            row = cur.fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {safe_url(self.url)}")
            cur_owner, epoch, expires = row
            live = cur_owner and expires is not None and expires > now
            if live and not (is_dead and is_dead(cur_owner)):
                raise RunBusy(
                    f"run {run_id} is being driven by {cur_owner} (lease until "
                    f"{time.strftime('%H:%M:%S', time.localtime(expires))}); wait for it to end "
                    "or stop that process",
                    run_id,
                    cur_owner,
                )
            cur.execute(take.text, take.one((owner, epoch + 1, now + ttl, run_id, epoch)))
            if cur.rowcount != 1:
                raise RunBusy(f"run {run_id} was taken by another process just now; try again", run_id, "")
            return int(epoch) + 1

    def release(self, run_id: str, epoch: int) -> None:
        r = t.runs
        free = self._stmt(
            "release",
            lambda: (
                r.update()
                .where(r.c.id == sa.bindparam("k_id"), r.c.epoch == sa.bindparam("k_epoch"))
                .values(owner=None, lease_expires=None)
            ),
            ("id", "epoch"),
        )
        with self._cursor() as cur:
            cur.execute(free.text, free.one((run_id, epoch)))

    def supersede(self, run_id: str, reason: str, now: float | None = None) -> None:
        """End an unfinished run that no process drives, cancelled for ``reason`` (a new run of
        the same key replaces it: ``conveyor run --new``)."""
        r = t.runs
        with self._tx() as conn:
            conn.execute(
                r.update()
                .where(r.c.id == run_id, r.c.state.in_(("pending", "running")))
                .values(state="cancelled", error=reason, ended_at=time.time() if now is None else now)
            )

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
            return [partition_record(r) for r in rows]

    def claim(
        self, owner: str, ttl: float, *, now: float | None = None, takeover_only: bool = False
    ) -> Claim | None:
        """Take the lease of the first partition that is open, free or expired, and whose
        upstream partitions are done; None if there is none. Expired leases come first (a dead
        scheduler's partition goes before new work), then oldest run first. ``takeover_only``:
        only an expired one (a scheduler that drives as many partitions as it takes)."""
        now = time.time() if now is None else now
        p, r = t.partitions, t.runs
        expired = sa.and_(p.c.owner.is_not(None), p.c.lease_expires < now)
        free = expired if takeover_only else sa.or_(p.c.owner.is_(None), p.c.lease_expires < now)
        candidates = (
            sa.select(p)
            .join(r, r.c.id == p.c.run_id)
            .where(p.c.state == "open", free, r.c.cancel_requested.is_(None))
            .order_by(sa.case((p.c.owner.is_(None), 1), else_=0), r.c.created_at, p.c.number)
            .limit(CANDIDATES)
        )
        skip_locked = self.dialect == "postgresql"
        if skip_locked:
            self._fence_off_stalled(now, ttl)
        with self._tx() as conn:
            rows = [partition_record(row) for row in conn.execute(candidates).mappings()]
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
                partition_record(row)
                for row in conn.execute(sa.select(p).where(p.c.run_id == run_id)).mappings()
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
        with self._tx() as conn:
            return reopen_partitions(conn, run_id)


def reopen_partitions(conn: Connection, run_id: str) -> int:
    p, r = t.partitions, t.runs
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


def stale_partition(run_id: str, number: int, epoch: int) -> StaleEpochError:
    return StaleEpochError(
        f"run {run_id} partition {number}: the lease (epoch {epoch}) was taken over by another "
        "scheduler; this one stops acting for it"
    )


def partition_record(row: Any) -> PartitionRecord:
    d = dict(row)
    d["needs"] = json.loads(d["needs"])
    return PartitionRecord(**d)
