"""Backfills: one submitted run per logical date of a range, at most N going at a time.

    conveyor backfill nightly --from 2026-11-01 --to 2026-11-30 --max-parallel 4

The pipeline receives each date as its ``logical_date`` parameter. A backfill is kept in the
store (``create``); every scheduler steps the backfills on its turns (``step``): it follows the
runs going, submits the next dates the limit allows, oldest first, and reopens once a date whose
run failed or was cancelled (its succeeded tasks are not run again). A date whose run already
succeeded is skipped, a date whose run is still going is followed: creating the same backfill
again does nothing for the dates that are done. Each step is written once, however many
processes step the same backfill (a version on its row).
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from conveyor import params as P
from conveyor.engine import Submission, submission
from conveyor.errors import ParameterError
from conveyor.graph import Graph
from conveyor.pipelines import LOGICAL_DATE, PipelineDef
from conveyor.store import Store
from conveyor.store.records import BackfillRecord
from conveyor.targets import FileTarget, Output, done_among, flatten

EVERY = ("day", "hour", "week", "month")
ENDED = ("succeeded", "failed", "cancelled", "skipped")
GOING = ("pending", "running")

#: The most dates one backfill takes (a year of hours).
MAX_DATES = 10_000


def dates(start: dt.datetime, end: dt.datetime, every: str) -> list[dt.datetime]:
    """The logical times from ``start`` to ``end`` inclusive, ``every`` apart."""
    if every not in EVERY:
        raise ParameterError(f"--every {every!r} is not one of: {', '.join(EVERY)}", {"every": "unknown"})
    if end < start:
        raise ParameterError(
            f"--to {end:%Y-%m-%d} is before --from {start:%Y-%m-%d}", {"end": "before start"}
        )
    out: list[dt.datetime] = []
    t = start
    while t <= end:
        if len(out) == MAX_DATES:
            raise ParameterError(
                f"the backfill would make more than {MAX_DATES} runs; "
                "split the range, or step by a longer --every",
                {"end": "too many dates"},
            )
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


def parse_when(text: str, field: str) -> dt.datetime:
    """A logical date from ``2026-11-01`` or ``2026-11-01T06:00``."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ParameterError(
            f"{field} {text!r} is not a date; write it like 2026-11-01 or 2026-11-01T06:00",
            {field.lstrip("-"): "not a date"},
        ) from None
    if when.tzinfo is not None:  # a time with a zone: that instant, as the UTC time it is
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def create(
    store: Store,
    pipe: PipelineDef,
    ref: str,
    times: list[dt.datetime],
    params: Mapping[str, Any],
    *,
    every: str,
    max_parallel: int,
    workdir: str,
    from_text: bool = False,
) -> BackfillRecord:
    """Check the backfill (every date's graph is built once, so a bad parameter is refused now)
    and record it; the dates already done are skipped, the going ones followed."""
    kind = _date_kind(pipe, times)
    if LOGICAL_DATE in params:
        raise ParameterError(
            f"parameter {LOGICAL_DATE}: a backfill gives each run its own; give the range instead",
            {LOGICAL_DATE: "set by the backfill"},
        )
    if max_parallel < 1:
        raise ParameterError("--max-parallel must be at least 1", {"max_parallel": "must be at least 1"})
    first = times[0].date() if kind == "date" else times[0]
    bound = pipe.bind({**params, LOGICAL_DATE: first}, from_text=from_text)
    bound.pop(LOGICAL_DATE)
    pjson = P.to_json(pipe.params, bound)
    slots: list[dict[str, Any]] = []
    unknown: dict[int, list[Output]] = {}  # slot -> the targets that would make its run do nothing
    for t in times:
        graphs: list[Graph] = []
        run, _, _ = _submission(pipe, ref, bound, t, kind, workdir, graphs)
        found = store.latest_run(run.key)
        slot: dict[str, Any] = {"when": t.isoformat(), "key": run.key, "run": None, "state": "waiting"}
        if found is not None:
            slot["run"] = found.id
            slot["state"] = "skipped" if found.state == "succeeded" else found.state
        else:
            ends = _end_targets(graphs[0], workdir)
            if ends:
                unknown[len(slots)] = ends
        slot["retried"] = False
        slots.append(slot)
    # Dates made by hand, from another store, a deleted one: nothing to do. Decided together:
    # a year of daily table partitions is one query.
    done = done_among(t for ts in unknown.values() for t in ts)
    for i, ts in unknown.items():
        if all(t in done for t in ts):
            slots[i]["state"] = "skipped"
    rec = BackfillRecord(
        id=time.strftime("bf-%Y%m%d-%H%M%S-") + secrets.token_hex(2),
        pipeline=pipe.name,
        target=ref,
        params=pjson,
        every=every,
        max_parallel=max_parallel,
        state=_final(slots) or "running",
        created_at=time.time(),
        slots=slots,
        workdir=workdir,
        ended_at=time.time() if _final(slots) else None,
    )
    store.create_backfill(rec)
    return rec


def step(store: Store, rec: BackfillRecord, load: Callable[[str], PipelineDef]) -> BackfillRecord:
    """Follow the backfill's going runs, submit or reopen what its limit allows, and end it when
    every date has ended. Returns the backfill as it is now (another process may have stepped
    it first). ``load`` loads its pipeline from the target, when a date is to be submitted."""
    if rec.state != "running":
        return refresh(store, rec)
    slots = _refreshed(store, rec.slots)
    start = [i for i in plan(slots, rec.max_parallel) if not _adopt(store, slots[i])]
    runs: list[Submission] = []
    reopen: list[str] = []
    if start:
        pipe = load(rec.target)
        kind = _date_kind(pipe, [dt.datetime.fromisoformat(slots[i]["when"]) for i in start])
        values = P.from_json(pipe.params, rec.params)
        for i in start:
            s = slots[i]
            if s["state"] == "waiting":
                sub = _submission(
                    pipe, rec.target, values, dt.datetime.fromisoformat(s["when"]), kind, rec.workdir
                )
                runs.append(sub)
                s["run"], s["key"] = sub[0].id, sub[0].key
            else:
                reopen.append(s["run"])
                s["retried"] = True
            s["state"] = "pending"
    state = _final(slots) or "running"
    if slots == rec.slots and state == rec.state:
        return rec
    store.advance_backfill(rec, slots=slots, state=state, runs=runs, reopen=reopen)
    return store.get_backfill(rec.id)


def refresh(store: Store, rec: BackfillRecord) -> BackfillRecord:
    """The backfill with the states of its going runs read again (a cancelled backfill's runs
    go on ending after it)."""
    slots = _refreshed(store, rec.slots)
    if slots == rec.slots:
        return rec
    store.advance_backfill(rec, slots=slots, state=rec.state)
    return store.get_backfill(rec.id)


def cancel(store: Store, rec: BackfillRecord) -> BackfillRecord:
    """Submit no more dates, and ask the going runs to stop."""
    while rec.state == "running":
        slots = [dict(s) for s in rec.slots]
        for s in slots:
            if s["state"] == "waiting":
                s["state"] = "cancelled"
        if store.advance_backfill(rec, slots=slots, state="cancelled"):
            for s in slots:
                if s["state"] in GOING:
                    store.request_cancel(s["run"])
        rec = store.get_backfill(rec.id)
    return rec


def plan(slots: list[dict[str, Any]], max_parallel: int) -> list[int]:
    """Which dates to start now, oldest first: waiting ones, and failed or cancelled ones not yet
    retried, while fewer than ``max_parallel`` runs are going."""
    room = max_parallel - sum(s["state"] in GOING for s in slots)
    out = []
    for i, s in enumerate(slots):
        if room <= 0:
            break
        if s["state"] == "waiting" or (s["state"] in ("failed", "cancelled") and not s["retried"]):
            out.append(i)
            room -= 1
    return out


def counts(slots: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in slots:
        out[s["state"]] = out.get(s["state"], 0) + 1
    return out


def _final(slots: list[dict[str, Any]]) -> str | None:
    """The backfill's end state once every date has ended for good, else None."""
    retry = any(s["state"] in ("failed", "cancelled") and not s["retried"] for s in slots)
    if retry or not all(s["state"] in ENDED for s in slots):
        return None
    return "failed" if any(s["state"] in ("failed", "cancelled") for s in slots) else "succeeded"


def _refreshed(store: Store, slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The slots with the states of their going runs read from the store."""
    out = [dict(s) for s in slots]
    states = store.run_states([s["run"] for s in out if s["state"] in GOING])
    for s in out:
        if s["state"] in GOING and s["run"] in states:
            s["state"] = states[s["run"]]
    return out


def _adopt(store: Store, slot: dict[str, Any]) -> bool:
    """A waiting date that got a run meanwhile (another backfill of the same dates, a run
    submitted by hand) follows that run instead of getting a second one. True if adopted; a
    failed or cancelled run is adopted as such, to be reopened once."""
    if slot["state"] != "waiting":
        return False
    found = store.latest_run(slot["key"])
    if found is None:
        return False
    slot["run"] = found.id
    slot["state"] = "skipped" if found.state == "succeeded" else found.state
    return found.state not in ("failed", "cancelled")


def _date_kind(pipe: PipelineDef, times: list[dt.datetime]) -> str:
    kind = next((p.type.name for p in pipe.params if p.name == LOGICAL_DATE), None)
    if kind is None:
        why = (
            f"pipeline {pipe.name} has no parameter {LOGICAL_DATE!r}: a backfill gives each run its "
            "date through it; declare logical_date: date (or datetime)"
        )
        raise ParameterError(why, {"pipeline": why})
    if kind == "date" and any(t.hour or t.minute for t in times):
        raise ParameterError(
            f"pipeline {pipe.name} takes {LOGICAL_DATE} as a date: use --every day or longer",
            {"every": "the pipeline takes a date"},
        )
    return kind


def _end_targets(graph: Graph, workdir: str) -> list[Output]:
    """The targets whose existence means a run of this graph would do nothing: those of every
    task that no other one needs (a run skips what nothing downstream needs); none when such
    a task has no target (it would run)."""
    needed = {u for node in graph for u in node.upstream}
    ends = [node for node in graph if node.id not in needed]
    out: list[Output] = []
    for node in ends:
        targets = flatten(node.output)
        if not targets:
            return []
        for target in targets:
            if isinstance(target, FileTarget) and target.is_local and not os.path.isabs(target.url):
                target = FileTarget(os.path.join(workdir, target.url))
            out.append(target)
    return out


def _submission(
    pipe: PipelineDef,
    ref: str,
    values: Mapping[str, Any],
    t: dt.datetime,
    kind: str,
    workdir: str,
    graphs: list[Graph] | None = None,
) -> Submission:
    value = t.date() if kind == "date" else t
    return submission(pipe, ref, {**values, LOGICAL_DATE: value}, workdir=workdir, graphs=graphs)
