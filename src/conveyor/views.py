"""What the service shows of the store: the shapes of the REST API, the Python client and the
CLI's ``--json``. Pydantic models, so that the API's OpenAPI schema is these and nothing else.

Times are ISO 8601 in UTC; durations are seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from conveyor import params as P
from conveyor.pipelines import PipelineDef
from conveyor.provenance.views import ProvenanceView
from conveyor.store.records import (
    AttemptRecord,
    BackfillRecord,
    InstanceRecord,
    PartitionRecord,
    RunRecord,
    SchedulerRecord,
)

RunState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
Every = Literal["day", "hour", "week", "month"]
Grouping = Literal["auto", "tasks", "instances"]
GROUPINGS: tuple[Grouping, ...] = ("auto", "tasks", "instances")


def stamp(t: float | None) -> dt.datetime | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC)


def took(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 6)


def _utc(t: dt.datetime) -> dt.datetime:
    """A logical date (kept as UTC without a zone) with its zone, as every time in an answer."""
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ParamView(View):
    name: str
    type: str = Field(description="int, float, str, bool, date, datetime, Path, an Enum's name, list[...]")
    required: bool
    default: Any = None
    choices: list[str] | None = Field(None, description="The allowed values of an Enum parameter")

    @classmethod
    def of(cls, p: P.Param) -> ParamView:
        choices = getattr(p.type, "choices", None)
        return cls(
            name=p.name,
            type=p.type.name,
            required=p.required,
            default=None if p.required else p.type.to_json(p.default),
            choices=list(choices) if choices else None,
        )


class ScheduleView(View):
    pipeline: str
    cron: str
    timezone: str
    catchup: bool
    description: str
    paused: bool = False
    last_tick: dt.datetime | None = Field(None, description="The last tick a run was started for")
    next_tick: dt.datetime | None = Field(None, description="When the next run starts (none while paused)")


class PipelineView(View):
    name: str
    target: str
    description: str
    params: list[ParamView]
    schedule: ScheduleView | None = None

    @classmethod
    def of(cls, pipe: PipelineDef, target: str, schedule: ScheduleView | None = None) -> PipelineView:
        return cls(
            name=pipe.name,
            target=target,
            description=pipe.description,
            params=[ParamView.of(p) for p in pipe.params],
            schedule=schedule,
        )


class RunView(View):
    id: str
    pipeline: str
    target: str
    params: dict[str, Any]
    state: RunState
    created_at: dt.datetime
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration: float | None = None
    error: str | None = None
    total: int = Field(0, description="Task instances in the run")
    counts: dict[str, int] = Field(default_factory=dict, description="Task instances by state")
    partitions: int = Field(
        0, description="Submitted to the schedulers in this many partitions; 0: driven by conveyor run"
    )
    cancel_requested: bool = False
    owner: str | None = Field(
        None, description="host:pid of the conveyor run driving it (not submitted runs)"
    )
    workdir: str = ""
    team: str | None = Field(None, description="The team of the project it was created through")
    created_by: str | None = Field(None, description="The user who created it")
    image: str | None = Field(None, description="The container image its attempts ran in")

    @classmethod
    def of(cls, r: RunRecord) -> RunView:
        return cls(**_run_fields(r, r.params))

    def __repr_args__(self) -> Any:
        """A short repr (a notebook shows what ``wait()`` returns): which run, how it stands."""
        yield from ((k, getattr(self, k)) for k in ("id", "pipeline", "state", "counts", "duration"))
        if self.error:
            yield "error", self.error


def _run_fields(r: RunRecord, params: dict[str, Any]) -> dict[str, Any]:
    created = stamp(r.created_at)
    assert created is not None
    return dict(
        id=r.id,
        pipeline=r.pipeline,
        target=r.target,
        params=params,
        state=r.state,
        created_at=created,
        started_at=stamp(r.started_at),
        ended_at=stamp(r.ended_at),
        duration=took(r.started_at, r.ended_at),
        error=r.error,
        total=r.total,
        counts=r.counts,
        partitions=r.partitions,
        cancel_requested=r.cancel_requested is not None,
        owner=None if r.partitions else r.owner,
        workdir=r.workdir,
        team=r.team,
        created_by=r.created_by,
        image=r.image,
    )


#: A parameter in a list of runs is cut to this many characters (of its text, or its JSON).
PREVIEW = 200


class RunSummary(RunView):
    """A run in a list: a parameter longer than ``PREVIEW`` characters (its text, or its JSON) is
    cut to a preview ending in "…" and named in ``params_cut``; the run's own answer
    (``/runs/{id}``) has it whole."""

    params_cut: list[str] = Field(
        default_factory=list,
        description=f"Parameters cut to {PREVIEW} characters here (ending in …): the run's own answer "
        "has them whole",
    )

    @classmethod
    def of(cls, r: RunRecord) -> RunSummary:
        params: dict[str, Any] = {}
        cut: list[str] = []
        for name, value in r.params.items():
            text = value if isinstance(value, str) else None
            if text is None and not isinstance(value, int | float | bool | None):
                text = json.dumps(value, ensure_ascii=False)
            if text is not None and len(text) > PREVIEW:
                params[name] = text[:PREVIEW] + "…"
                cut.append(name)
            else:
                params[name] = value
        return cls(**_run_fields(r, params), params_cut=cut)


class RunPage(View):
    items: list[RunSummary] = Field(
        description="The runs, their long parameters cut (see params_cut): a list, not the runs"
    )
    total: int = Field(description="Runs matching the filters, on every page")
    offset: int
    limit: int


class AttemptView(View):
    number: int
    state: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    duration: float | None = None
    error: str | None = None
    worker: str | None = None
    placement: str | None = Field(
        None,
        description="Where its engine has it, in the engine's terms: queued (and why), pulling, on a node",
    )
    has_log: bool = False
    waited_for: str | None = Field(
        None, description="The run whose attempt of the same task instance this one waited for and took"
    )
    outputs: list[dict[str, Any]] | None = Field(
        None,
        description="What its targets held when it succeeded: a table partition's rows, a file's or "
        "object's size and SHA-256",
    )

    @classmethod
    def of(cls, a: AttemptRecord) -> AttemptView:
        started = stamp(a.started_at)
        assert started is not None
        return cls(
            number=a.number,
            state=a.state,
            started_at=started,
            ended_at=stamp(a.ended_at),
            duration=took(a.started_at, a.ended_at),
            error=a.error,
            worker=a.worker,
            placement=a.placement,
            has_log=bool(a.log_path and os.path.exists(a.log_path)),
            waited_for=a.waited_for,
            outputs=json.loads(a.outputs) if a.outputs else None,
        )


class WhyView(View):
    kind: str = Field(
        description="upstream, backoff, no_executor, quota_full, runs_full, borrow_limit, lender_busy, "
        "fair_share or no_capacity"
    )
    text: str = Field(description="One line for people")
    since: dt.datetime | None = Field(None, description="Since when this reason holds (quota reasons)")


class TaskView(View):
    id: str = Field(description="The task instance's id: a hash of its task and parameters")
    task: str
    label: str
    params: dict[str, Any]
    upstream: list[str]
    state: str
    attempts: int
    targets: list[str]
    has_result: bool
    error: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    duration: float | None = None
    partition: int = 0
    attempt_log: list[AttemptView] = Field(default_factory=list)
    waited_for: str | None = Field(
        None, description="Its last attempt took the outcome of this run's attempt instead of executing"
    )
    outputs: list[dict[str, Any]] | None = Field(
        None, description="What its targets held when its last successful attempt ended (fingerprints)"
    )
    why: WhyView | None = Field(
        None, description="Why it waits (pending, ready or in backoff): upstream, quota, fair share, capacity"
    )
    cache_key: str | None = Field(
        None, description="Its result cache key: code, parameters, inputs, environment"
    )
    reused_from: str | None = Field(
        None, description="The run whose outputs it reused from the result cache instead of executing"
    )

    def __repr_args__(self) -> Any:
        """A short repr: which instance, how it stands."""
        yield from ((k, getattr(self, k)) for k in ("label", "state", "attempts", "duration"))
        if self.error:
            yield "error", self.error

    def _repr_html_(self) -> str:
        from conveyor.display import task_html

        return task_html(self)

    @classmethod
    def of(
        cls,
        i: InstanceRecord,
        attempts: list[AttemptRecord],
        why: WhyView | None = None,
        cached: tuple[str | None, str | None] = (None, None),
    ) -> TaskView:
        """``cached``: its cache key and the run it reused (``Store.cached_marks``)."""
        return cls(
            why=why,
            cache_key=cached[0],
            reused_from=cached[1],
            id=i.id,
            task=i.task,
            label=i.label,
            params=i.params,
            upstream=i.upstream,
            state=i.state,
            attempts=i.attempts,
            targets=i.targets,
            has_result=i.result is not None,
            error=i.error,
            started_at=stamp(i.started_at),
            ended_at=stamp(i.ended_at),
            duration=took(i.started_at, i.ended_at),
            partition=i.partition,
            attempt_log=[AttemptView.of(a) for a in attempts],
            waited_for=attempts[-1].waited_for if attempts else None,
            outputs=next((json.loads(a.outputs) for a in reversed(attempts) if a.outputs), None),
        )


class PartitionView(View):
    number: int
    size: int
    needs: list[int]
    state: str
    owner: str | None = None
    epoch: int = 0
    lease_expires: dt.datetime | None = None
    takeovers: int = 0
    taken_from: str | None = None
    taken_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    error: str | None = None

    @classmethod
    def of(cls, p: PartitionRecord) -> PartitionView:
        return cls(
            number=p.number,
            size=p.size,
            needs=p.needs,
            state=p.state,
            owner=p.owner,
            epoch=p.epoch,
            lease_expires=stamp(p.lease_expires),
            takeovers=p.takeovers,
            taken_from=p.taken_from,
            taken_at=stamp(p.taken_at),
            started_at=stamp(p.started_at),
            ended_at=stamp(p.ended_at),
            error=p.error,
        )


class RunDetail(RunView):
    tasks: list[TaskView] = Field(default_factory=list)
    partition_states: list[PartitionView] = Field(default_factory=list)
    provenance: ProvenanceView | None = Field(
        None, description="The run record: commit, diff, environment, inputs' fingerprints, results' hashes"
    )


class GraphNode(View):
    id: str = Field(description="The instance's id, or \"task:NAME\" for a group of a task's instances")
    label: str = Field(description="The instance's label, or the task's name with its count; in full")
    task: str
    state: str = Field(description="The instance's state; a group's worst (failed, running, ... succeeded)")
    counts: dict[str, int] = Field(description="Instances by state ({state: 1} for an instance)")
    size: int = Field(description="Instances in the node")
    x: float = Field(description="The left side, px")
    y: float = Field(description="The top side, px")
    w: float
    h: float
    layer: int = Field(description="The column, from 0 at the left")


class GraphEdge(View):
    source: str
    target: str
    points: list[list[float]] = Field(
        description="A polyline of [x, y] points, px: from the source's right side to the target's left"
    )


class GraphView(View):
    run: RunView
    grouped: bool = Field(description="One node per task, not per instance")
    width: float = Field(description="The drawing's size, px")
    height: float
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    cursor: int = Field(description="Pass to /changes as since: what changed after this graph")


class InstanceChange(View):
    id: str
    task: str
    state: str
    attempts: int
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    @classmethod
    def of(cls, i: InstanceRecord) -> InstanceChange:
        return cls(
            id=i.id,
            task=i.task,
            state=i.state,
            attempts=i.attempts,
            started_at=stamp(i.started_at),
            ended_at=stamp(i.ended_at),
        )


class ChangesView(View):
    run: RunView
    cursor: int = Field(description="The new cursor: pass it as since next time")
    instances: list[InstanceChange] = Field(description="Instances whose state changed after since")


class GanttBar(View):
    instance: str
    label: str
    task: str
    number: int = Field(description="The attempt's number, from 1")
    state: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    worker: str | None = None

    @classmethod
    def of(cls, a: AttemptRecord, i: InstanceRecord) -> GanttBar:
        started = stamp(a.started_at)
        assert started is not None
        return cls(
            instance=a.instance_id,
            label=i.label,
            task=i.task,
            number=a.number,
            state=a.state,
            started_at=started,
            ended_at=stamp(a.ended_at),
            worker=a.worker,
        )


class LogView(View):
    task: str = Field(description="The task instance's label")
    instance: str
    attempt: int
    state: str
    text: str
    truncated: bool = Field(
        False,
        description="Only the log's end is here: its last lines (tail), or its last bytes (a server "
        "sends at most its limit of each log; a marker line says what is left out)",
    )


class DateView(View):
    when: dt.datetime = Field(description="The logical date")
    state: str = Field(description="waiting, pending, running, succeeded, failed, cancelled or skipped")
    run: str | None = None
    retried: bool = False


class BackfillView(View):
    id: str
    pipeline: str
    target: str
    params: dict[str, Any]
    every: Every
    max_parallel: int
    state: Literal["running", "succeeded", "failed", "cancelled"]
    created_at: dt.datetime
    ended_at: dt.datetime | None = None
    total: int
    done: int = Field(description="Dates ended: succeeded, skipped, failed or cancelled")
    counts: dict[str, int]
    dates: list[DateView]

    @classmethod
    def of(cls, b: BackfillRecord) -> BackfillView:
        from conveyor.backfills import ENDED, counts

        created = stamp(b.created_at)
        assert created is not None
        return cls(
            id=b.id,
            pipeline=b.pipeline,
            target=b.target,
            params=b.params,
            every=b.every,  # type: ignore[arg-type]
            max_parallel=b.max_parallel,
            state=b.state,  # type: ignore[arg-type]
            created_at=created,
            ended_at=stamp(b.ended_at),
            total=len(b.slots),
            done=sum(s["state"] in ENDED for s in b.slots),
            counts=counts(b.slots),
            dates=[
                DateView(
                    when=_utc(dt.datetime.fromisoformat(s["when"])),
                    state=s["state"],
                    run=s["run"],
                    retried=s["retried"],
                )
                for s in b.slots
            ],
        )


class LeaseView(View):
    run: str
    partition: int
    epoch: int
    expires: dt.datetime | None = None


class SchedulerView(View):
    name: str
    host: str
    pid: int
    state: Literal["running", "stopped", "silent"]
    started_at: dt.datetime
    heartbeat: dt.datetime
    workers: int
    leases: list[LeaseView]

    @classmethod
    def of(cls, s: SchedulerRecord, leases: list[PartitionRecord], silent: bool) -> SchedulerView:
        started, beat = stamp(s.started_at), stamp(s.heartbeat)
        assert started is not None and beat is not None
        return cls(
            name=s.name,
            host=s.host,
            pid=s.pid,
            state="silent" if s.state == "running" and silent else s.state,  # type: ignore[arg-type]
            started_at=started,
            heartbeat=beat,
            workers=s.workers,
            leases=[
                LeaseView(run=p.run_id, partition=p.number, epoch=p.epoch, expires=stamp(p.lease_expires))
                for p in leases
            ],
        )


class Health(View):
    status: Literal["ok", "degraded"]
    store: str = Field(description="ok, or why the store does not answer")
    schedulers: int = Field(description="Schedulers that beat recently")
    version: str


# -- what clients send --------------------------------------------------------------------------
class TriggerRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, description="The pipeline's parameters by name")


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pipeline: str
    start: str = Field(description="The first logical date: 2026-11-01 or 2026-11-01T06:00", max_length=40)
    end: str = Field(description="The last logical date, included", max_length=40)
    every: Every = "day"
    max_parallel: int = Field(1, ge=1, le=1000)
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters besides logical_date")
