"""The embedded store's part for runners and new owners (as ``Attempts`` and ``Claims`` are
``SqlStore``'s): attempts begun, beaten and ended with conditional updates, instance ids claimed,
adopted attempts' status; SQL text on ``sqlite3``, the same contract as ``SqlStore``'s (the shared
store tests run on both)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from conveyor.store.records import CLAIM_TTL, STALE, AttemptStatus, Holder


class LiteAttempts:
    """Mixed into ``LiteStore``."""

    if TYPE_CHECKING:

        def _cursor(self) -> AbstractContextManager[Any]: ...

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
        with self._cursor() as cur:
            cur.execute(_BEAT, (now, run_id, instance_id, number))
            if cur.rowcount != 1:
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
        held: dict[str, Holder] = {}
        for iid, n, state, result, ended_at in end:
            if state == "succeeded":
                cur.execute(_CLAIM_SUCCEEDED, (result, ended_at, iid, run_id, n))
            else:
                cur.execute(_CLAIM_DROP, (iid, run_id, n))
        cur.execute(_CLAIMS_RENEW_RUN, (now + ttl, run_id))
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
        cur.execute(_CLAIM_DONE, (run_id, instance_id, run_id))
        found = cur.fetchone()
        if found is not None:
            held_by, n, who, expires, result = found
            return Holder(str(held_by), int(n), str(who), float(expires), "succeeded", result)
        take_run, take_n = take_from or (None, None)
        cur.execute(_CLAIM, (instance_id, run_id, number, owner, now, now + ttl, now, take_run, take_n))
        cur.execute(_CLAIM_HOLDER, (instance_id,))
        row = cur.fetchone()
        if row is None or (row[0], int(row[1])) == (run_id, number):
            return None
        return Holder(str(row[0]), int(row[1]), str(row[2]), float(row[3]))

    def beat_attempt(
        self, run_id: str, instance_id: str, number: int, now: float, ttl: float = CLAIM_TTL
    ) -> bool:
        with self._cursor() as cur:
            cur.execute(_BEAT, (now, run_id, instance_id, number))
            alive = bool(cur.rowcount == 1)
            cur.execute(_CLAIM_RENEW, (now + ttl, instance_id, run_id, number))
            return alive

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
        waited_for: str | None = None,
        outputs: str | None = None,
    ) -> bool:
        mine = (instance_id, run_id, number)
        try:
            with self._cursor() as cur:
                if state == "succeeded":
                    cur.execute(_CLAIM_SUCCEEDED, (result, ended_at, *mine))
                else:
                    cur.execute(_CLAIM_DROP, mine)
                cur.execute(_END, (state, ended_at, error, waited_for, outputs, run_id, instance_id, number))
                if cur.rowcount != 1:
                    return False
                if state == "succeeded":
                    cur.execute(_INSTANCE_DONE, (result, ended_at, run_id, instance_id, number))
                    if cur.rowcount != 1:
                        raise _Superseded()  # roll the attempt's end back too
                return True
        except _Superseded:
            with self._cursor() as cur:
                cur.execute(_CLAIM_DROP, mine)
            return False

    def declare_lost(self, run_id: str, instance_id: str, number: int, now: float, reason: str) -> bool:
        with self._cursor() as cur:
            cur.execute(_END, ("lost", now, reason, None, None, run_id, instance_id, number))
            return bool(cur.rowcount == 1)

    def attempt_status(self, run_id: str, keys: Sequence[tuple[str, int]]) -> list[AttemptStatus]:
        wanted = set(keys)
        ids = sorted({k[0] for k in keys})
        out: list[AttemptStatus] = []
        with self._cursor() as cur:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                cur.execute(_STATUS.format(", ".join("?" * len(chunk))), (run_id, *chunk))
                out += [AttemptStatus(*row) for row in cur.fetchall() if (row[0], row[1]) in wanted]
        return out

    def claim_of(self, instance_id: str) -> Holder | None:
        with self._cursor() as cur:
            cur.execute(_CLAIM_HOLDER, (instance_id,))
            row = cur.fetchone()
        return None if row is None else Holder(str(row[0]), int(row[1]), str(row[2]), float(row[3]))

    def waiting_on(self, instance_id: str, holder: Holder) -> tuple[Holder | None, AttemptStatus | None]:
        status = self.attempt_status(holder.run_id, [(instance_id, holder.attempt)])
        return self.claim_of(instance_id), (status[0] if status else None)


class _Superseded(Exception):
    """The attempt's instance moved on: undo the attempt's end in the same transaction."""


# What runners write: the statements of ``store.attempts`` and ``store.claims``, as SQL text
# (the shared store tests run the same contract on both stores).
_BEAT = (
    "UPDATE attempts SET heartbeat = ? WHERE attempts.run_id = ? AND attempts.instance_id = ? "
    "AND attempts.number = ? AND attempts.state = 'running'"
)
_END = (
    "UPDATE attempts SET state = ?, ended_at = ?, error = ?, waited_for = ?, outputs = ? "
    "WHERE attempts.run_id = ? AND attempts.instance_id = ? AND attempts.number = ? "
    "AND attempts.state = 'running'"
)
_INSTANCE_DONE = (
    "UPDATE task_instances SET state = 'succeeded', result = ?, error = NULL, ended_at = ? "
    "WHERE task_instances.run_id = ? AND task_instances.id = ? AND task_instances.state = 'running' "
    "AND task_instances.attempts = ?"
)
_STATUS = (
    "SELECT a.instance_id, a.number, a.state, a.started_at, a.heartbeat, a.error, ti.result "
    "FROM attempts AS a JOIN task_instances AS ti ON ti.run_id = a.run_id AND ti.id = a.instance_id "
    "WHERE a.run_id = ? AND a.instance_id IN ({})"
)
_CLAIM = (
    "INSERT INTO claims (instance_id, run_id, attempt, owner, claimed_at, expires) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET run_id = excluded.run_id, "
    "attempt = excluded.attempt, owner = excluded.owner, claimed_at = excluded.claimed_at, "
    "expires = excluded.expires, state = 'running', result = NULL, ended_at = NULL "
    "WHERE claims.expires < ? OR claims.state = 'succeeded' "
    "OR (claims.run_id = excluded.run_id AND claims.attempt = excluded.attempt) "
    "OR (claims.run_id = ? AND claims.attempt = ?)"
)
_CLAIM_DONE = (
    "SELECT c.run_id, c.attempt, c.owner, c.expires, c.result FROM claims AS c JOIN runs AS r "
    "ON r.id = ? WHERE c.instance_id = ? AND c.state = 'succeeded' AND c.run_id != ? "
    "AND c.ended_at >= r.created_at"
)
_CLAIM_HOLDER = (
    "SELECT claims.run_id, claims.attempt, claims.owner, claims.expires FROM claims "
    "WHERE claims.instance_id = ? AND claims.state = 'running'"
)
_CLAIM_RENEW = (
    "UPDATE claims SET expires = ? WHERE claims.instance_id = ? AND claims.run_id = ? AND claims.attempt = ?"
)
_CLAIM_SUCCEEDED = (
    "UPDATE claims SET state = 'succeeded', result = ?, ended_at = ? "
    "WHERE claims.instance_id = ? AND claims.run_id = ? AND claims.attempt = ?"
)
_CLAIMS_RENEW_RUN = "UPDATE claims SET expires = ? WHERE claims.run_id = ? AND claims.state = 'running'"
_CLAIM_DROP = "DELETE FROM claims WHERE claims.instance_id = ? AND claims.run_id = ? AND claims.attempt = ?"
