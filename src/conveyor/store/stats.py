"""Figures for monitoring, read from the store: whatever number of schedulers write to it, the
figures are the same from any process that reads it (the ``/metrics`` endpoint)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.core.states import State
from conveyor.store import schema as t
from conveyor.store.part import Part

_RUN_STATES = ("pending", "running", "succeeded", "failed", "cancelled")
_LIVE = ("pending", "running")  # runs whose instances are work still to do
_ATTEMPT_ENDS = ("succeeded", "failed", "lost", "cancelled")


@dataclass(frozen=True, slots=True)
class Histogram:
    """Observations in cumulative buckets: ``buckets`` pairs each upper bound (the last is
    ``inf``) with how many observations are at most that; ``total`` is their sum."""

    buckets: tuple[tuple[float, int], ...]
    total: float
    count: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    runs_by_state: dict[str, int]  # every run state, 0 included
    instances_by_state: dict[str, int]  # instances of pending and running runs; every state
    queue_depth: int  # ready instances of pending and running runs: waiting for a worker
    running_attempts: int
    task_duration: dict[str, Histogram]  # seconds each ended attempt ran, by how it ended
    queue_wait: Histogram  # seconds from an instance becoming ready to its attempt starting


class Stats(Part):
    """Mixed into ``SqlStore``."""

    def stats(self, buckets: Sequence[float]) -> StoreStats:
        """Counts by state and histograms (with ``buckets``' upper bounds, in seconds), each
        computed by the database, in one transaction."""
        bounds = tuple(sorted({float(b) for b in buckets if math.isfinite(b)}))
        r, ti, a = t.runs, t.task_instances, t.attempts
        live = sa.select(r.c.id).where(r.c.state.in_(_LIVE))
        with self._tx() as conn:
            runs = _counts(conn, sa.select(r.c.state, sa.func.count()).group_by(r.c.state))
            instances = _counts(
                conn,
                sa.select(ti.c.state, sa.func.count()).where(ti.c.run_id.in_(live)).group_by(ti.c.state),
            )
            running = conn.execute(
                sa.select(sa.func.count()).select_from(a).where(a.c.state == "running")
            ).scalar_one()
            ran = a.c.ended_at - a.c.started_at
            durations = {
                str(row[0]): _histogram(row[1:], bounds)
                for row in conn.execute(
                    sa.select(a.c.state, *_aggregates(ran, bounds))
                    .where(a.c.ended_at.is_not(None))
                    .group_by(a.c.state)
                )
            }
            waits = _waits()
            wait = _histogram(
                conn.execute(
                    sa.select(*_aggregates(waits.c.wait, bounds)).where(waits.c.wait.is_not(None))
                ).one(),
                bounds,
            )
        empty = _histogram((0,) * len(bounds) + (0, 0), bounds)
        return StoreStats(
            runs_by_state={s: 0 for s in _RUN_STATES} | runs,
            instances_by_state={s.value: 0 for s in State} | instances,
            queue_depth=instances.get(State.READY.value, 0),
            running_attempts=int(running),
            task_duration={s: empty for s in _ATTEMPT_ENDS} | durations,
            queue_wait=wait,
        )


def _counts(conn: Connection, query: sa.Select[Any]) -> dict[str, int]:
    return {str(state): int(n) for state, n in conn.execute(query)}


def _waits() -> sa.Subquery:
    """Each attempt's wait: its start (the instance's move ready -> running) less the latest
    move of the instance into ready before it (the first time, after a backoff, or after a lost
    attempt). Transitions are ordered by their id, the order they were committed in."""
    x, prior = t.transitions.alias("x"), t.transitions.alias("prior")
    became_ready = (
        sa.select(prior.c.at)
        .where(
            prior.c.run_id == x.c.run_id,
            prior.c.instance_id == x.c.instance_id,
            prior.c.new == State.READY.value,
            prior.c.id < x.c.id,
        )
        .order_by(prior.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.select((x.c.at - became_ready).label("wait"))
        .where(x.c.old == State.READY.value, x.c.new == State.RUNNING.value)
        .subquery("waits")
    )


def _aggregates(value: sa.ColumnElement[Any], bounds: Sequence[float]) -> list[sa.ColumnElement[Any]]:
    """How many values are at most each bound, their sum and their count: one row."""
    at_most = [sa.func.coalesce(sa.func.sum(sa.case((value <= b, 1), else_=0)), 0) for b in bounds]
    return [*at_most, sa.func.coalesce(sa.func.sum(value), 0.0), sa.func.count(value)]


def _histogram(row: Sequence[Any], bounds: Sequence[float]) -> Histogram:
    *at_most, total, count = row
    cumulative = [(b, int(n)) for b, n in zip(bounds, at_most, strict=True)]
    return Histogram((*cumulative, (math.inf, int(count))), float(total), int(count))
