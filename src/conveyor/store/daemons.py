"""What scheduler daemons keep in the store: their registry, and each schedule's cursor (moved
exactly once per tick, in the transaction that creates the tick's runs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from conveyor.errors import NameInUse, StoreError
from conveyor.store import schema as t
from conveyor.store.leases import partition_record
from conveyor.store.part import Part
from conveyor.store.records import InstanceRecord, PartitionRecord, RunRecord, SchedulerRecord


class Daemons(Part):
    """Mixed into ``SqlStore``."""

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

    def pause_schedule(self, pipeline: str, paused: bool, now: float) -> None:
        """Pause a schedule (no tick fires) or resume it. Ticks missed while paused are treated
        as missed in downtime: ``catchup`` decides whether they run."""
        s = t.schedules
        self.schedule_cursor(pipeline, now)
        with self._tx() as conn:
            conn.execute(s.update().where(s.c.pipeline == pipeline).values(paused_at=now if paused else None))

    def schedule_states(self) -> dict[str, tuple[float, float | None]]:
        """Each known schedule (by its pipeline's target): its last tick and when it was paused."""
        s = t.schedules
        with self._tx() as conn:
            rows = conn.execute(sa.select(s.c.pipeline, s.c.last_tick, s.c.paused_at)).all()
        return {str(p): (float(last), paused) for p, last, paused in rows}

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
                leases.setdefault(row["owner"], []).append(partition_record(row))
        return [(rec, leases.get(rec.name, [])) for rec in recs]

    def forget_schedulers(self, before: float) -> int:
        """Drop the schedulers silent since ``before`` (stopped, or dead) from the registry."""
        s = t.schedulers
        with self._tx() as conn:
            return int(conn.execute(s.delete().where(s.c.heartbeat < before)).rowcount)

    def fire(
        self,
        pipeline: str,
        last: float,
        tick: float,
        runs: Sequence[tuple[RunRecord, Sequence[InstanceRecord], Sequence[PartitionRecord]]],
    ) -> bool:
        """Move the schedule's cursor from ``last`` to ``tick`` and create its runs, in one
        transaction; False (nothing written) if another scheduler moved it first, or the
        schedule is paused."""
        s = t.schedules
        move = self._stmt(
            "move_cursor",
            lambda: (
                s.update()
                .where(
                    s.c.pipeline == sa.bindparam("k_pipeline"),
                    s.c.last_tick == sa.bindparam("k_last"),
                    s.c.paused_at.is_(None),
                )
                .values(last_tick=sa.bindparam("v_tick"))
            ),
            ("tick", "pipeline", "last"),
        )
        try:
            with self._cursor() as cur:
                cur.execute(move.text, move.one((tick, pipeline, last)))
                if cur.rowcount != 1:
                    raise _Moved()
                for run, instances, partitions in runs:
                    self._insert_run(cur, run, instances, partitions)
        except _Moved:
            return False
        return True


class _Moved(Exception):
    """Another scheduler moved the schedule's cursor first: roll this transaction back."""


def _fields(rec: SchedulerRecord) -> dict[str, Any]:
    return {f: getattr(rec, f) for f in SchedulerRecord.__slots__}
