"""Backfills: one submitted run per logical date of a range, at most N at a time.

    conveyor backfill etl/nightly.py:nightly --from 2026-11-01 --to 2026-11-30 --max-parallel 4

The pipeline receives each date as its ``logical_date`` parameter. A date whose run already
succeeded is skipped, a date whose run is still going is followed, a date whose run failed or
was cancelled is retried (its succeeded tasks are not run again): running the same backfill
again does nothing for the dates that are done. The schedulers (``conveyor scheduler``) drive the
runs; this module decides which dates to submit, and when.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.engine import Submission, submission
from conveyor.errors import ParameterError
from conveyor.pipelines import LOGICAL_DATE, PipelineDef
from conveyor.store import Store
from conveyor.store.records import RunRecord

EVERY = ("day", "hour", "week", "month")
ENDED = ("succeeded", "failed", "cancelled")


def dates(start: dt.datetime, end: dt.datetime, every: str) -> list[dt.datetime]:
    """The logical times from ``start`` to ``end`` inclusive, ``every`` apart."""
    if every not in EVERY:
        raise ParameterError(f"--every {every!r} is not one of: {', '.join(EVERY)}")
    if end < start:
        raise ParameterError(f"--to {end:%Y-%m-%d} is before --from {start:%Y-%m-%d}")
    out, t = [], start
    while t <= end:
        out.append(t)
        if every == "day":
            t += dt.timedelta(days=1)
        elif every == "hour":
            t += dt.timedelta(hours=1)
        elif every == "week":
            t += dt.timedelta(weeks=1)
        else:
            month = t.month % 12 + 1
            year = t.year + (t.month == 12)
            t = t.replace(year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1]))
    return out


@dataclass
class Slot:
    when: dt.datetime
    prepared: Submission
    run: RunRecord | None = None  # submitted (or found) run
    state: str = "waiting"  # waiting | pending | running | succeeded | failed | cancelled | skipped
    retried: bool = False  # a failed or cancelled run of this date was reopened by this backfill


class Backfill:
    """The dates of one backfill and their runs; ``step`` submits what the limit allows."""

    def __init__(
        self,
        store: Store,
        pipe: PipelineDef,
        ref: str,
        times: list[dt.datetime],
        params: Mapping[str, Any],
        *,
        max_parallel: int,
        workdir: str,
    ) -> None:
        kind = next((p.type.name for p in pipe.params if p.name == LOGICAL_DATE), None)
        if kind is None:
            raise ParameterError(
                f"pipeline {pipe.name} has no parameter {LOGICAL_DATE!r}: a backfill gives each run its "
                "date through it; declare logical_date: date (or datetime)"
            )
        if kind == "date" and any(t.hour or t.minute for t in times):
            raise ParameterError(
                f"pipeline {pipe.name} takes {LOGICAL_DATE} as a date: use --every day or longer"
            )
        if max_parallel < 1:
            raise ParameterError("--max-parallel must be at least 1")
        self.store, self.max_parallel = store, max_parallel
        self.slots = []
        for t in times:
            value = t.date() if kind == "date" else t
            prepared = submission(pipe, ref, {**params, LOGICAL_DATE: value}, workdir=workdir)
            self.slots.append(Slot(t, prepared))
        for slot in self.slots:  # what earlier runs of the same dates did
            found = store.latest_run(slot.prepared[0].key)
            if found is not None:
                slot.run, slot.state = found, found.state
                if found.state == "succeeded":
                    slot.state = "skipped"

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.slots:
            out[s.state] = out.get(s.state, 0) + 1
        return out

    @property
    def done(self) -> bool:
        return all(s.state in (*ENDED, "skipped") for s in self.slots)

    def step(self) -> list[Slot]:
        """Refresh the states of the active runs and submit (or reopen) as many dates as the
        limit allows, oldest first. Returns the slots started now."""
        for s in self.slots:
            if s.run is not None and s.state in ("pending", "running"):
                s.run = self.store.get_run(s.run.id)
                s.state = s.run.state
        active = sum(s.state in ("pending", "running") for s in self.slots)
        started = []
        for s in self.slots:
            if active >= self.max_parallel:
                break
            if s.state == "waiting":
                run, instances, partitions = s.prepared
                self.store.create_run(run, instances, partitions)
                s.run, s.state = run, "pending"
            elif s.state in ("failed", "cancelled") and s.run is not None and not s.retried:
                self.store.reopen(s.run.id)  # a new try of a date that did not succeed
                s.state, s.retried = "pending", True
            else:
                continue
            active += 1
            started.append(s)
        return started

    def cancel(self) -> None:
        for s in self.slots:
            if s.run is not None and s.state in ("pending", "running"):
                s.state = self.store.request_cancel(s.run.id)
