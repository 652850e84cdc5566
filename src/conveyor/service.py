"""The service: what a user can ask of Conveyor, over one store and one project.

The REST API (``conveyor.api``) and the Python client without a URL (``conveyor.Client()``) both
call a ``Service``; the CLI calls it through the client. It starts nothing itself: the runs it
creates are submitted runs, which scheduler daemons drive (``conveyor server`` runs one).
Everything it returns is a view (``conveyor.views``); everything wrong with a request is a
``ConveyorError`` (a ``ParameterError`` names each bad field).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import signal
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import backfills, engine, ids, logfiles
from conveyor.errors import (
    ConveyorError,
    LoadError,
    ParameterError,
    PipelineNotFound,
    RunBusy,
    RunNotFound,
    StoreError,
)
from conveyor.layout import Drawing, graph_of, layout, tally, worst
from conveyor.limits import Limits, human
from conveyor.limits import read as read_limits
from conveyor.loader import load_pipeline
from conveyor.pipelines import PipelineDef
from conveyor.project import Entry, Project
from conveyor.project import find as find_project
from conveyor.provenance.views import ProvenanceView, provenance_view
from conveyor.quotas.pending import why
from conveyor.schedules import Schedule
from conveyor.store import Store
from conveyor.store.records import BackfillRecord, InstanceRecord, RunRecord
from conveyor.views import (
    GROUPINGS,
    BackfillView,
    ChangesView,
    GanttBar,
    GraphEdge,
    GraphNode,
    GraphView,
    Health,
    InstanceChange,
    LogView,
    PartitionView,
    PipelineView,
    RunDetail,
    RunPage,
    RunSummary,
    RunView,
    SchedulerView,
    ScheduleView,
    TaskView,
    WhyView,
    stamp,
)

#: A scheduler whose last heartbeat is older than this (seconds) is shown as silent.
SILENT = 5.0

#: Runs on one page at most.
MAX_PAGE = 500

#: A run with more instances than this is drawn one node per task (``graph(group="auto")``).
GROUP_ABOVE = 300

#: Layouts kept, the most recently used (a run's graph does not change while it runs).
LAYOUTS = 32

#: A log answer holds at most this many logs' worth of ``limits.log_read`` bytes.
LOG_READS = 4

#: The text of a log left out of an answer that holds enough already.
_UNREAD = "[conveyor: not read: this answer holds enough logs already; ask for this task alone]\n"


@dataclass(frozen=True, slots=True)
class Artifact:
    """A task's stored result: JSON, or a pickle (load it only from a store you trust)."""

    data: bytes
    media_type: str  # application/json | application/x-python-pickle


class Service:
    def __init__(
        self,
        store: Store,
        project: Project | None = None,
        *,
        targets: bool = False,
        where: Path | None = None,
        limits: Limits | None = None,
    ) -> None:
        """``project``: its pipelines are the ones asked for by name. ``targets``: also accept
        a pipeline given as ``path/to/file.py:name`` or ``module:name`` (the local client and
        CLI; never the API, which loads only the project's code). ``where``: without a project,
        where a reload looks for a ``conveyor.toml`` created since (there, or above).
        ``limits``: the sizes of logs and parameters (default: the project's settings)."""
        self.store = store
        self.project = project
        self.where = where
        self.targets = targets
        root = project.root if project is not None else where
        self.limits = limits if limits is not None else read_limits(root)
        self._entries: dict[str, Entry] = {}
        self._layouts: OrderedDict[tuple[str, bool, int], Drawing] = OrderedDict()
        self._layouts_lock = threading.Lock()
        self.reload(fresh=False)

    # -- pipelines ----------------------------------------------------------------------------
    def reload(self, *, fresh: bool = True) -> list[PipelineView]:
        """Load the project's pipelines again (``fresh``: import their code anew, so that edits
        are seen). A project that no longer loads keeps the pipelines it had, and raises."""
        current = self.project
        if fresh and current is not None:
            current = current.reread()
        elif fresh and self.where is not None:
            current = find_project(self.where)  # a conveyor.toml created since the start
        if current is not None:
            entries = current.pipelines(fresh=fresh)
            self.project, self._entries = current, {e.pipeline.name: e for e in entries}
        return self.pipelines()

    def pipelines(self) -> list[PipelineView]:
        states = (
            self.store.schedule_states() if any(e.pipeline.schedule for e in self._entries.values()) else {}
        )
        return [self._pipeline_view(e, states) for e in self._entries.values()]

    def pipeline(self, name: str) -> PipelineView:
        entry = self.entry(name)
        return self._pipeline_view(entry, self.store.schedule_states() if entry.pipeline.schedule else {})

    def entry(self, name: str) -> Entry:
        """The pipeline by name (or, with ``targets``, by its target)."""
        found = self._entries.get(name)
        if found is not None:
            return found
        if self.targets and (":" in name or name.endswith(".py")):
            pipe = load_pipeline(name)
            return Entry(engine.canonical_target(name, pipe.name), pipe)
        known = ", ".join(sorted(self._entries)) or (
            "none: no conveyor.toml lists any" if self.project is None else "none"
        )
        raise PipelineNotFound(f"no pipeline {name!r}; known pipelines: {known}")

    def _pipeline_view(self, e: Entry, states: Mapping[str, tuple[float, float | None]]) -> PipelineView:
        sched = e.pipeline.schedule
        return PipelineView.of(
            e.pipeline, e.target, None if sched is None else _schedule_view(e, sched, states)
        )

    # -- runs ---------------------------------------------------------------------------------
    def trigger(
        self, name: str, params: Mapping[str, Any], *, from_text: bool = True, created_by: str | None = None
    ) -> RunView:
        """Submit a run of the pipeline for the schedulers; ``from_text``: strings are parsed by
        the parameters' types (JSON and the command line). An unfinished run of the pipeline with
        the same parameters is returned instead of a second one. ``created_by``: the user asking."""
        entry = self.entry(name)
        self._check_sizes(params)
        run, instances, partitions = engine.submission(
            entry.pipeline, entry.target, params, from_text=from_text, workdir=self._workdir(entry)
        )
        if created_by is not None:
            run = dataclasses.replace(run, created_by=created_by)
        return RunView.of(engine.record(self.store, run, instances, partitions))

    def runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 20,
        offset: int = 0,
        teams: Sequence[str] | None = None,
    ) -> RunPage:
        """A page of runs, newest first; ``teams``: only runs of these teams (None: every run)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ParameterError(f"limit {limit} must be between 1 and {MAX_PAGE}", {"limit": "out of range"})
        if offset < 0:
            raise ParameterError(f"offset {offset} must not be negative", {"offset": "negative"})
        window: dict[str, Any] = {
            "pipeline": pipeline,
            "state": state,
            "since": _epoch(since),
            "until": _epoch(until),
            "teams": teams,
        }
        items = self.store.list_runs(limit=limit, offset=offset, **window)
        total = self.store.count_runs(**window)
        return RunPage(items=[RunSummary.of(r) for r in items], total=total, offset=offset, limit=limit)

    def run(self, run_id: str, *, tasks: bool = True) -> RunDetail:
        """The run; with ``tasks``, its task instances with their attempts, and its partitions
        (without: its state and counts only, cheap to poll)."""
        r = self.store.get_run(run_id)
        if not tasks:
            return RunDetail(**RunView.of(r).model_dump())
        attempts: dict[str, list[Any]] = {}
        for a in self.store.attempts(r.id):
            attempts.setdefault(a.instance_id, []).append(a)
        parts = self.store.partitions(r.id) if r.partitions else []
        instances = self.store.instances(r.id)
        cached = self.store.cached_marks(r.id)
        return RunDetail(
            **RunView.of(r).model_dump(),
            tasks=[
                TaskView.of(i, attempts.get(i.id, []), w, cached.get(i.id, (None, None)))
                for i, w in zip(instances, self._why(r, instances), strict=True)
            ],
            partition_states=[PartitionView.of(p) for p in parts],
            provenance=provenance_view(self.store, r),
        )

    def provenance(self, run_id: str) -> ProvenanceView | None:
        """The run's record (None for a run created before records were kept)."""
        return provenance_view(self.store, self.store.get_run(run_id))

    def _why(self, r: RunRecord, instances: list[InstanceRecord]) -> list[WhyView | None]:
        """Why each instance waits (None for one that does not), while the run is not over."""
        if r.state not in ("pending", "running"):
            return [None] * len(instances)
        states = {i.id: i.state for i in instances}
        labels = {i.id: i.label for i in instances}
        recorded = self.store.waits(r.id)
        out: list[WhyView | None] = []
        for i in instances:
            p = why(i.state, i.upstream, i.not_before, states, labels, recorded.get(i.id))
            out.append(None if p is None else WhyView(kind=p.kind, text=p.text, since=stamp(p.since)))
        return out

    def cancel(self, run_id: str) -> RunView:
        """Cancel a run: a submitted one through its schedulers (nothing new starts, running
        tasks are stopped); one driven by ``conveyor run`` on this machine as a Ctrl-C would."""
        r = self.store.get_run(run_id)
        if r.state in ("succeeded", "failed", "cancelled"):
            return RunView.of(r)
        if r.partitions:
            self.store.request_cancel(r.id)
            return RunView.of(self.store.get_run(r.id))
        from conveyor.owners import owner_is_dead

        host, _, pid = (r.owner or "").rpartition(":")
        if not r.owner or not pid.isdigit() or r.lease_expires is None or r.lease_expires < time.time():
            raise RunBusy(
                f"run {r.id} is not being driven now; nothing to cancel (resume it with conveyor retry)"
            )
        if host != socket.gethostname() or owner_is_dead(r.owner):
            raise RunBusy(
                f"run {r.id} is driven by {r.owner}, on another machine: press Ctrl-C where it runs"
            )
        os.kill(int(pid), signal.SIGINT)  # as a Ctrl-C in its terminal: a graceful cancel
        return RunView.of(r)

    def retry(self, run_id: str) -> RunView:
        """Reopen a submitted run's failed and cancelled parts: the schedulers run what did not
        succeed. (A run of ``conveyor run`` is resumed with ``conveyor retry`` where it ran.)"""
        r = self.store.get_run(run_id)
        if not r.partitions:
            raise RunBusy(
                f"run {r.id} was started by conveyor run, not submitted; resume it where it ran with "
                f"conveyor retry {r.id}"
            )
        if r.state in ("pending", "running"):
            raise RunBusy(f"run {r.id} is {r.state}; retry it once it has ended")
        if r.state == "succeeded":
            return RunView.of(r)
        self.store.reopen(r.id)
        return RunView.of(self.store.get_run(r.id))

    # -- a run drawn: its graph, what changed, its attempts in time ------------------------------
    def graph(self, run_id: str, group: str = "auto") -> GraphView:
        """The run's graph laid out for drawing (``conveyor.layout``), with each node's state now
        and the cursor to pass to ``changes``. ``group``: ``instances`` (a node per instance),
        ``tasks`` (a node per task), ``auto`` (per task above GROUP_ABOVE instances)."""
        if group not in GROUPINGS:
            raise ParameterError(
                f"group {group!r} must be one of {', '.join(GROUPINGS)}", {"group": "not a grouping"}
            )
        r = self.store.get_run(run_id)
        cursor, instances = self.store.changes(r.id, 0)
        grouped = group == "tasks" or (group == "auto" and len(instances) > GROUP_ABOVE)
        drawing = self._drawing(r.id, grouped, instances)
        counts = tally(instances, grouped)
        by_id = {i.id: i for i in instances}
        nodes = []
        for p in drawing.nodes:
            c = counts[p.id]
            member = by_id.get(p.id)
            nodes.append(
                GraphNode(
                    id=p.id,
                    label=p.label,
                    task=member.task if member else p.id.partition(":")[2],
                    state=member.state if member else worst(c),
                    counts=c,
                    size=sum(c.values()),
                    x=p.x,
                    y=p.y,
                    w=p.w,
                    h=p.h,
                    layer=p.layer,
                )
            )
        return GraphView(
            run=RunView.of(r),
            grouped=grouped,
            width=drawing.width,
            height=drawing.height,
            nodes=nodes,
            edges=[
                GraphEdge(source=e.source, target=e.target, points=[list(p) for p in e.points])
                for e in drawing.edges
            ],
            cursor=cursor,
        )

    def _drawing(self, run_id: str, grouped: bool, instances: list[InstanceRecord]) -> Drawing:
        """The layout of the run's graph, from the cache while its number of instances is the same."""
        key = (run_id, grouped, len(instances))
        with self._layouts_lock:
            found = self._layouts.get(key)
            if found is not None:
                self._layouts.move_to_end(key)
                return found
        drawing = layout(*graph_of(instances, grouped))
        with self._layouts_lock:
            self._layouts[key] = drawing
            while len(self._layouts) > LAYOUTS:
                self._layouts.popitem(last=False)
        return drawing

    def changes(self, run_id: str, since: int = 0) -> ChangesView:
        """The run now, and its instances whose state changed after the cursor ``since`` (0:
        every instance), with the cursor to pass next time."""
        if since < 0:
            raise ParameterError(f"since {since} must not be negative", {"since": "negative"})
        r = self.store.get_run(run_id)
        cursor, instances = self.store.changes(r.id, since)
        return ChangesView(
            run=RunView.of(r), cursor=cursor, instances=[InstanceChange.of(i) for i in instances]
        )

    def attempts(self, run_id: str) -> list[GanttBar]:
        """Every attempt of the run's instances, by start: a timeline."""
        r = self.store.get_run(run_id)
        by_id = {i.id: i for i in self.store.instances(r.id)}
        return [
            GanttBar.of(a, by_id[a.instance_id]) for a in self.store.attempts(r.id) if a.instance_id in by_id
        ]

    # -- tasks: logs and results ----------------------------------------------------------------
    def instances(self, run_id: str, task: str | None) -> list[InstanceRecord]:
        """The run's instances named by ``task`` (instance id or its prefix, label, task name),
        or all of them."""
        instances = self.store.instances(run_id)
        if task is None:
            return instances
        exact = [i for i in instances if task in (i.id, i.label, i.task)]
        found = exact or [i for i in instances if i.id.startswith(task)]
        if not found:
            names = sorted({i.task for i in instances})
            raise RunNotFound(
                f"run {run_id} has no task {ids.shown(task)!r}; its tasks are: {', '.join(names)}"
            )
        return found

    def logs(
        self, run_id: str, task: str | None = None, *, attempt: int | None = None, tail: int | None = None
    ) -> list[LogView]:
        """The captured output (stdout, stderr, logging) of each attempt of the chosen tasks;
        ``tail``: only the last lines of each. Each log is read from its end, at most
        ``limits.log_read`` bytes of it (a marker says what is left out), and the answer holds
        at most ``LOG_READS`` times that: the logs past it come back empty, marked truncated."""
        if tail is not None and tail < 1:
            raise ParameterError(f"tail {tail} must be at least 1", {"tail": "must be at least 1"})
        run_id = self.store.get_run(run_id).id
        out = []
        budget = self.limits.log_read * LOG_READS
        for inst in self.instances(run_id, task):
            for a in self.store.attempts(run_id, inst.id):
                if attempt is not None and a.number != attempt:
                    continue
                if budget > 0:
                    found = logfiles.end(a.log_path, min(self.limits.log_read, budget), tail)
                    budget -= len(found.text)
                else:
                    found = logfiles.End(_UNREAD, True)
                out.append(
                    LogView(
                        task=inst.label,
                        instance=inst.id,
                        attempt=a.number,
                        state=a.state,
                        text=found.text,
                        truncated=found.truncated,
                    )
                )
        return out

    def log_file(self, run_id: str, task: str, attempt: int | None = None) -> tuple[str | None, str]:
        """The log file of one task's attempt (default: its latest) and the attempt's state: to
        follow while it runs."""
        run_id = self.store.get_run(run_id).id
        inst = self.instances(run_id, task)[0]
        tries = [a for a in self.store.attempts(run_id, inst.id) if attempt is None or a.number == attempt]
        if not tries:
            return None, inst.state
        return tries[-1].log_path, tries[-1].state

    def result(self, run_id: str, task: str) -> Artifact:
        """The stored return value of a succeeded task instance."""
        r = self.store.get_run(run_id)
        found = self.instances(r.id, task)
        if len(found) > 1:
            labels = ", ".join(i.label for i in found[:5])
            raise ParameterError(
                f"task {ids.shown(task)!r} of run {r.id} has {len(found)} instances ({labels}); name one"
            )
        inst = found[0]
        if inst.state not in ("succeeded", "skipped"):
            raise RunBusy(f"{inst.label} of run {r.id} is {inst.state}: it has no result yet")
        if inst.result is None:
            return Artifact(b"null", "application/json")
        path = Path(inst.result)
        try:
            data = path.read_bytes()
        except OSError:
            raise LoadError(f"the result of {inst.label} ({path}) is missing; re-run the task") from None
        kind = "application/json" if path.suffix == ".json" else "application/x-python-pickle"
        return Artifact(data, kind)

    def notebook(self, run_id: str, task: str) -> bytes:
        """The HTML of a notebook task's executed notebook (after a failure: the notebook up to
        the failing cell), to serve under ``notebooks.serving.POLICY``."""
        from conveyor.notebooks.serving import rendering_of

        r = self.store.get_run(run_id)
        inst = self.instances(r.id, task)[0]
        return rendering_of(inst.label, inst.state, inst.targets, r.workdir)

    # -- backfills ----------------------------------------------------------------------------
    def backfill(
        self,
        pipeline: str,
        start: str | dt.datetime,
        end: str | dt.datetime,
        *,
        every: str = "day",
        max_parallel: int = 1,
        params: Mapping[str, Any] | None = None,
        from_text: bool = True,
    ) -> BackfillView:
        """Record a backfill: one run per logical date from ``start`` to ``end``; the schedulers
        step it (``backfills``)."""
        entry = self.entry(pipeline)
        self._check_sizes(params or {})
        first = backfills.parse_when(start, "--from") if isinstance(start, str) else start
        last = backfills.parse_when(end, "--to") if isinstance(end, str) else end
        times = backfills.dates(first, last, every)
        rec = backfills.create(
            self.store,
            entry.pipeline,
            entry.target,
            times,
            params or {},
            every=every,
            max_parallel=max_parallel,
            workdir=self._workdir(entry),
            from_text=from_text,
        )
        return BackfillView.of(self.step_backfill(rec.id, entry.pipeline))

    def step_backfill(self, backfill_id: str, pipe: PipelineDef | None = None) -> Any:
        """Step one backfill now (the schedulers do it on their turns)."""
        rec = self.store.get_backfill(backfill_id)
        return backfills.step(self.store, rec, lambda target: pipe or load_pipeline(target))

    def backfills(self, *, state: str | None = None, limit: int = 50) -> list[BackfillView]:
        return [BackfillView.of(self._fresh(b)) for b in self.store.list_backfills(limit=limit, state=state)]

    def get_backfill(self, backfill_id: str) -> BackfillView:
        return BackfillView.of(self._fresh(self.store.get_backfill(backfill_id)))

    def _fresh(self, rec: BackfillRecord) -> BackfillRecord:
        """An ended backfill whose runs were still going: their states read again (a running
        one is kept fresh by the schedulers)."""
        going = rec.state != "running" and any(s["state"] in backfills.GOING for s in rec.slots)
        return backfills.refresh(self.store, rec) if going else rec

    def cancel_backfill(self, backfill_id: str) -> BackfillView:
        return BackfillView.of(backfills.cancel(self.store, self.store.get_backfill(backfill_id)))

    # -- schedules and schedulers -----------------------------------------------------------------
    def schedules(self) -> list[ScheduleView]:
        states = self.store.schedule_states()
        return [
            _schedule_view(e, e.pipeline.schedule, states)
            for e in self._entries.values()
            if e.pipeline.schedule is not None
        ]

    def pause(self, pipeline: str, paused: bool = True) -> ScheduleView:
        """Pause a pipeline's schedule (no run starts on its ticks) or resume it. On resume, the
        ticks missed meanwhile run as after downtime: every one with ``catchup``, else the latest."""
        entry = self.entry(pipeline)
        sched = entry.pipeline.schedule
        if sched is None:
            raise ParameterError(
                f"pipeline {entry.pipeline.name} has no schedule", {"pipeline": "no schedule"}
            )
        self.store.pause_schedule(entry.target, paused, time.time())
        return _schedule_view(entry, sched, self.store.schedule_states())

    def schedulers(self) -> list[SchedulerView]:
        now = time.time()
        return [
            SchedulerView.of(s, leases, now - s.heartbeat > SILENT) for s, leases in self.store.schedulers()
        ]

    def health(self) -> Health:
        from conveyor import __version__

        try:
            live = [s for s in self.schedulers() if s.state == "running"]
        except StoreError as exc:
            return Health(status="degraded", store=str(exc), schedulers=0, version=__version__)
        return Health(status="ok", store="ok", schedulers=len(live), version=__version__)

    # -- plumbing -------------------------------------------------------------------------------
    def _check_sizes(self, params: Mapping[str, Any]) -> None:
        """Refuse a parameter larger than ``limits.param_max_size`` (as JSON, or as text)."""
        cap = self.limits.param_max_size
        big = {}
        for name, value in params.items():
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            n = len(text.encode("utf-8", "surrogatepass"))
            if n > cap:
                big[str(name)] = f"{n} bytes, over the limit of {human(cap)}: pass a path or URL to the data"
        if big:
            first = next(iter(big))
            raise ParameterError(
                f"parameter {first!r} is {big[first]} ([params] max_size in conveyor.toml, or "
                "CONVEYOR_PARAM_MAX_SIZE, sets the limit)",
                big,
            )

    def _workdir(self, entry: Entry) -> str:
        """Where a run's relative targets resolve: the project's root, else here."""
        if self.project is not None and entry.pipeline.name in self._entries:
            return str(self.project.root)
        return os.getcwd()


def _schedule_view(
    e: Entry, sched: Schedule, states: Mapping[str, tuple[float, float | None]]
) -> ScheduleView:
    last, paused = states.get(e.target, (None, None))
    following = sched.next_tick(max(last or 0.0, time.time())) if paused is None else None
    return ScheduleView(
        pipeline=e.pipeline.name,
        cron=sched.cron,
        timezone=sched.timezone,
        catchup=sched.catchup,
        description=sched.describe(),
        paused=paused is not None,
        last_tick=stamp(last),
        next_tick=stamp(following),
    )


def _epoch(t: dt.datetime | None) -> float | None:
    if t is None:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


__all__ = ["Artifact", "ConveyorError", "Service"]
