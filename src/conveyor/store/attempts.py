"""What runners write and new owners read: attempts' heartbeats and ends, conditional on the
attempt still being current (the first completion wins, a superseded attempt's is refused), and
the lease a runner checks before it starts an attempt."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.store import schema as t
from conveyor.store import statements
from conveyor.store.part import Part
from conveyor.store.records import AttemptStatus as AttemptStatus  # re-exported


class Attempts(Part):
    """Mixed into ``SqlStore``."""

    if TYPE_CHECKING:

        def _end_claim(
            self, cur: Any, key: tuple[str, str, int], state: str, ended_at: float, result: str | None
        ) -> None: ...

    def _beat(self, cur: Any, run_id: str, instance_id: str, number: int, now: float) -> bool:
        """The attempt's heartbeat, in the transaction of ``cur``: False if it is not current."""
        beat = self._stmt(
            ("current_attempt", "heartbeat"),
            lambda: statements.current_attempt_update(("heartbeat",)),
            ("heartbeat", "run_id", "instance_id", "number"),
        )
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
        waited_for: str | None = None,
        outputs: str | None = None,
    ) -> bool:
        """The runner records its attempt's end: only if the attempt is still current, and a
        success marks the instance succeeded with its result. The attempt's claim of its
        instance id is dropped in the same transaction. True if the end was recorded."""
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
                key = (run_id, instance_id, number)
                self._end_claim(cur, key, state, ended_at, result)
                if not self._end_current(cur, key, state, ended_at, error, waited_for, outputs):
                    return False
                if state == "succeeded":
                    cur.execute(done.text, done.one((result, ended_at, run_id, instance_id, number)))
                    if cur.rowcount != 1:
                        raise _Superseded()  # roll the attempt's end back too
                return True
        except _Superseded:
            with self._cursor() as cur:
                self._end_claim(cur, (run_id, instance_id, number), "superseded", ended_at, None)
            return False

    def _end_current(
        self,
        cur: Any,
        key: tuple[str, str, int],
        state: str,
        ended_at: float,
        error: str | None,
        waited_for: str | None = None,
        outputs: str | None = None,
    ) -> bool:
        """End the attempt ``key`` (run, instance, number) if it is still running."""
        cols = ("state", "ended_at", "error", "waited_for", "outputs")
        end = self._stmt(
            ("current_attempt", "end"),
            lambda: statements.current_attempt_update(cols),
            (*cols, "run_id", "instance_id", "number"),
        )
        cur.execute(end.text, end.one((state, ended_at, error, waited_for, outputs, *key)))
        return bool(cur.rowcount == 1)

    def declare_lost(self, run_id: str, instance_id: str, number: int, now: float, reason: str) -> bool:
        """A new owner ends an adopted attempt whose runner went silent, before deciding to run
        it again; False if the runner recorded its end first (then that end counts)."""
        with self._cursor() as cur:
            return self._end_current(cur, (run_id, instance_id, number), "lost", now, reason)

    def place_attempt(self, run_id: str, instance_id: str, number: int, where: str) -> None:
        """Where its engine has the attempt now (``executors.port.Placed``), while it runs."""
        a = t.attempts
        with self._tx() as conn:
            conn.execute(
                a.update()
                .where(a.c.run_id == run_id, a.c.instance_id == instance_id, a.c.number == number)
                .where(a.c.state == "running")
                .values(placement=where[:500])
            )

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

    def ended_logs(self, before: float) -> list[tuple[str, str]]:
        """The log files of the attempts of runs that ended before ``before`` (seconds since
        1970): ``(run id, path)`` pairs, oldest runs first."""
        a, r = t.attempts, t.runs
        q = (
            sa.select(a.c.run_id, a.c.log_path)
            .join(r, r.c.id == a.c.run_id)
            .where(
                r.c.state.in_(("succeeded", "failed", "cancelled")),
                r.c.ended_at < before,
                a.c.log_path.is_not(None),
            )
            .order_by(r.c.ended_at, a.c.run_id)
        )
        with self._tx() as conn:
            return [(str(run_id), str(path)) for run_id, path in conn.execute(q) if path]


class _Superseded(Exception):
    """The attempt's instance moved on: undo the attempt's end in the same transaction."""


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
