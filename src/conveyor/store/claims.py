"""Claims: which attempt executes each task instance id now, across every run in the store.

A task instance's id is its identity (a hash of its task and canonical parameters), the same in
every run that needs it. An attempt claims the id before it executes: under a scheduler its
runner, as it begins (``begin_attempt``); under `conveyor run` its driver, in the group commit
that starts it (``_claims_in``). The claim is renewed by the runner's heartbeat (and each commit
of `conveyor run`) and ended with the attempt's end: a success stays on it, with its result,
for runs that existed meanwhile to take; any other end drops it. An attempt that finds the id
claimed by another live attempt waits for it and takes its outcome instead of executing the
task a second time. A claim is a lease: one nobody renews expires, and the next attempt takes
it over.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.store import schema as t
from conveyor.store.part import Part
from conveyor.store.records import CLAIM_TTL as CLAIM_TTL
from conveyor.store.records import STALE as STALE
from conveyor.store.records import AttemptStatus
from conveyor.store.records import Holder as Holder

#: What a runner writes when it claims an instance id.
CLAIM_COLUMNS = ("instance_id", "run_id", "attempt", "owner", "claimed_at", "expires")


class Claims(Part):
    """Mixed into ``SqlStore``."""

    def begin_attempt(
        self,
        run_id: str,
        instance_id: str,
        number: int,
        owner: str,
        now: float,
        *,
        ttl: float = CLAIM_TTL,
        take_from: tuple[str, int] | None = None,
    ) -> Holder | str | None:
        """The runner starts an attempt, in one transaction: its first heartbeat (only if the
        attempt is still current), then the claim of its instance id. None: the claim is ours,
        execute. ``STALE``: do not start. A ``Holder``: another live attempt executes the
        instance (wait for it), or one succeeded after this attempt's run was created (take
        its outcome: runs that overlap share an instance's execution). ``take_from`` (run,
        attempt) takes over a claim whose runner is known to be dead, before it expires."""
        with self._cursor() as cur:
            if not self._beat(cur, run_id, instance_id, number, now):
                return STALE
            return self._claim(cur, run_id, instance_id, number, owner, now, ttl, take_from)

    def _claims_in(
        self,
        cur: Any,
        run_id: str,
        owner: str,
        now: float,
        start: Sequence[tuple[str, int]],
        end: Sequence[tuple[str, int, str, str | None, float]],
        ttl: float = CLAIM_TTL,
    ) -> dict[str, Holder]:
        """`conveyor run`'s claims, in its group commit (``cur``; its runners write nothing per
        attempt): end the claims of its attempts that ended (instance, attempt, state, result,
        ended_at), renew its run's other claims, and claim the instance ids of the attempts it
        starts. Returns the started instances that another run's attempt holds, or that one
        succeeded while this run existed, with that attempt: their runners wait for it or take
        its outcome."""
        c = t.claims
        renew = self._stmt(
            "claims_renew_run",
            lambda: (
                c.update()
                .where(c.c.run_id == sa.bindparam("k_run_id"), c.c.state == "running")
                .values(expires=sa.bindparam("v_expires"))
            ),
            ("expires", "run_id"),
        )
        held: dict[str, Holder] = {}
        for iid, n, state, result, ended_at in end:
            self._end_claim(cur, (run_id, iid, n), state, ended_at, result)
        cur.execute(renew.text, renew.one((now + ttl, run_id)))
        for iid, n in start:
            found = self._claim(cur, run_id, iid, n, owner, now, ttl, None)
            if found is not None:
                held[iid] = found
        return held

    def _claim(
        self,
        cur: Any,
        run_id: str,
        instance_id: str,
        number: int,
        owner: str,
        now: float,
        ttl: float,
        take_from: tuple[str, int] | None,
    ) -> Holder | None:
        """Claim ``instance_id`` for the attempt, in the transaction of ``cur``: None if it is
        this attempt's now, else the attempt that holds it (or that succeeded meanwhile)."""
        upsert = self._stmt(
            "claim",
            lambda: _claim_upsert(self.dialect),
            (*CLAIM_COLUMNS, "now", "take_run", "take_n"),
        )
        held = self._stmt(
            "claim_holder",
            lambda: sa.select(
                t.claims.c.run_id, t.claims.c.attempt, t.claims.c.owner, t.claims.c.expires
            ).where(t.claims.c.instance_id == sa.bindparam("k_instance_id"), t.claims.c.state == "running"),
            ("instance_id",),
        )
        c, r = t.claims, t.runs
        done = self._stmt(
            "claim_done",
            lambda: (
                sa.select(c.c.run_id, c.c.attempt, c.c.owner, c.c.expires, c.c.result)
                .join(r, r.c.id == sa.bindparam("k_run_id"))
                .where(
                    c.c.instance_id == sa.bindparam("k_instance_id"),
                    c.c.state == "succeeded",
                    c.c.run_id != sa.bindparam("k_run_id"),
                    c.c.ended_at >= r.c.created_at,
                )
            ),
            ("run_id", "instance_id"),
        )
        cur.execute(done.text, done.one((run_id, instance_id)))
        found = cur.fetchone()
        if found is not None:
            held_by, n, who, expires, result = found
            return Holder(str(held_by), int(n), str(who), float(expires), "succeeded", result)
        take_run, take_n = take_from or (None, None)
        cur.execute(
            upsert.text,
            upsert.one((instance_id, run_id, number, owner, now, now + ttl, now, take_run, take_n)),
        )
        cur.execute(held.text, held.one((instance_id,)))
        row = cur.fetchone()
        if row is None or (row[0], int(row[1])) == (run_id, number):
            return None
        return Holder(str(row[0]), int(row[1]), str(row[2]), float(row[3]))

    def beat_attempt(
        self, run_id: str, instance_id: str, number: int, now: float, ttl: float = CLAIM_TTL
    ) -> bool:
        """The runner's heartbeat: renews the attempt (False if it is no longer current) and
        its claim, which holds while the runner executes, current or not."""
        renew = self._stmt(
            "claim_renew",
            lambda: (
                t.claims.update()
                .where(
                    t.claims.c.instance_id == sa.bindparam("k_instance_id"),
                    t.claims.c.run_id == sa.bindparam("k_run_id"),
                    t.claims.c.attempt == sa.bindparam("k_attempt"),
                )
                .values(expires=sa.bindparam("v_expires"))
            ),
            ("expires", "instance_id", "run_id", "attempt"),
        )
        with self._cursor() as cur:
            alive = self._beat(cur, run_id, instance_id, number, now)
            cur.execute(renew.text, renew.one((now + ttl, instance_id, run_id, number)))
            return alive

    def _end_claim(
        self, cur: Any, key: tuple[str, str, int], state: str, ended_at: float, result: str | None
    ) -> None:
        """The attempt ``key`` (run, instance, number) ended: a success stays on its claim
        with its result (runs that overlapped it take it); any other end drops the claim."""
        c = t.claims
        mine = (
            c.c.instance_id == sa.bindparam("k_instance_id"),
            c.c.run_id == sa.bindparam("k_run_id"),
            c.c.attempt == sa.bindparam("k_attempt"),
        )
        if state == "succeeded":
            keep = self._stmt(
                "claim_succeeded",
                lambda: (
                    c.update()
                    .where(*mine)
                    .values(
                        state="succeeded",
                        result=sa.bindparam("v_result"),
                        ended_at=sa.bindparam("v_ended_at"),
                    )
                ),
                ("result", "ended_at", "instance_id", "run_id", "attempt"),
            )
            cur.execute(keep.text, keep.one((result, ended_at, key[1], key[0], key[2])))
            return
        drop = self._stmt("claim_drop", lambda: c.delete().where(*mine), ("instance_id", "run_id", "attempt"))
        cur.execute(drop.text, drop.one((key[1], key[0], key[2])))

    def claim_of(self, instance_id: str) -> Holder | None:
        """The attempt that executes ``instance_id`` now (a success kept on the claim is not)."""
        c = t.claims
        with self._tx() as conn:
            q = sa.select(c.c.run_id, c.c.attempt, c.c.owner, c.c.expires)
            row = conn.execute(q.where(c.c.instance_id == instance_id, c.c.state == "running")).first()
        return None if row is None else Holder(str(row[0]), int(row[1]), str(row[2]), float(row[3]))

    def waiting_on(self, instance_id: str, holder: Holder) -> tuple[Holder | None, AttemptStatus | None]:
        """What a waiting runner polls: the instance id's claim now, and the attempt it waits
        for (its state, error and, if it succeeded, its instance's result)."""
        status = self.attempt_status(holder.run_id, [(instance_id, holder.attempt)])
        return self.claim_of(instance_id), (status[0] if status else None)

    if TYPE_CHECKING:

        def _beat(self, cur: Any, run_id: str, instance_id: str, number: int, now: float) -> bool: ...
        def attempt_status(self, run_id: str, keys: Sequence[tuple[str, int]]) -> list[AttemptStatus]: ...


def _claim_upsert(dialect: str) -> Any:
    """Insert the claim, or take it over if it expired, is ours already, or is ``take_*``'s."""
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    c = t.claims
    ins = insert(c).values({col: sa.bindparam(f"v_{col}") for col in CLAIM_COLUMNS})
    new = ins.excluded
    return ins.on_conflict_do_update(
        index_elements=[c.c.instance_id],
        set_={
            **{k: new[k] for k in ("run_id", "attempt", "owner", "claimed_at", "expires")},
            "state": "running",
            "result": None,
            "ended_at": None,
        },
        where=sa.or_(
            c.c.expires < sa.bindparam("k_now", type_=sa.Float),
            c.c.state == "succeeded",
            sa.and_(c.c.run_id == new.run_id, c.c.attempt == new.attempt),
            sa.and_(
                c.c.run_id == sa.bindparam("k_take_run", type_=sa.String),
                c.c.attempt == sa.bindparam("k_take_n", type_=sa.Integer),
            ),
        ),
    )
