"""The routes of the REST API: each one a thin call of ``conveyor.service.Service``.

The shapes are the views (``conveyor.views``); errors are mapped in ``problems``. Endpoints are
plain ``def``: FastAPI runs them on its thread pool, so a slow store does not stall the server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BeforeValidator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from conveyor import ids, logfiles, metrics
from conveyor.api import problems
from conveyor.api.access import Who, authorize, user_of, visible_teams
from conveyor.api.problems import responses
from conveyor.errors import BackfillNotFound, ConveyorError, ParameterError, RunNotFound
from conveyor.notebooks import serving
from conveyor.service import GROUP_ABOVE, Service
from conveyor.views import (
    BackfillRequest,
    BackfillView,
    ChangesView,
    GanttBar,
    GraphView,
    Grouping,
    Health,
    LogView,
    PipelineView,
    RunDetail,
    RunPage,
    RunState,
    RunView,
    SchedulerView,
    ScheduleView,
    TriggerRequest,
)

#: A followed log is read this often (seconds).
FOLLOW_EVERY = 0.25

#: Instance states in which an attempt may still start: a followed log waits for it.
WAITING = ("pending", "ready", "running", "retry_wait")

#: The largest offset into the list of runs (a bound the stores can hold).
MAX_OFFSET = 2**31 - 1

#: The largest cursor into a run's changes (the largest integer the stores can hold).
MAX_CURSOR = 2**63 - 1

BackfillState = Literal["running", "succeeded", "failed", "cancelled"]


def _service(request: Request) -> Service:
    return cast(Service, request.app.state.service)


Svc = Annotated[Service, Depends(_service)]


# -- names from the path: text no store can hold names nothing -----------------------------------
def storable(text: str) -> bool:
    """Can a store hold this text? (No NUL, no lone surrogates.)"""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _run_id(
    run_id: Annotated[str, Path(description="The run's id, or a prefix of it that only it has")],
) -> str:
    if not storable(run_id) or not ids.plausible(run_id):  # 404 before any query
        raise RunNotFound(f"no run {ids.shown(run_id)!r}: {ids.RULE}")
    return run_id


def _backfill_id(
    backfill_id: Annotated[str, Path(description="The backfill's id, or a prefix of it that only it has")],
) -> str:
    if not storable(backfill_id) or not ids.plausible(backfill_id):  # 404 before any query
        raise BackfillNotFound(f"no backfill {ids.shown(backfill_id)!r}: {ids.RULE}")
    return backfill_id


def _not_a_number(value: Any) -> Any:
    """A time is written as ISO 8601, not as seconds since 1970 (which pydantic would take)."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("write the time as ISO 8601, like 2026-11-01 or 2026-11-01T06:00:00Z")
    return value


When = Annotated[dt.datetime | None, BeforeValidator(_not_a_number)]
RunId = Annotated[str, Depends(_run_id)]
BackfillId = Annotated[str, Depends(_backfill_id)]
PipelineName = Annotated[str, Path(description="The pipeline's name, as its project lists it")]


def check_values(value: Any, loc: list[str | int]) -> None:
    """Refuse (422) values in a body that no store can keep: text with NUL characters or lone
    surrogates, NaN and infinite numbers; each is named by its place."""
    found: list[tuple[list[str | int], str]] = []
    stack: list[tuple[Any, list[str | int]]] = [(value, loc)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not storable(item):
                found.append((where, "text with NUL characters or lone surrogates cannot be stored"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                found.append((where, f"{item} is not a number JSON can hold"))
        elif isinstance(item, dict):
            for k, v in item.items():
                if isinstance(k, str) and not storable(k):
                    found.append((where, "a name with NUL characters or lone surrogates"))
                else:
                    stack.append((v, [*where, k]))
        elif isinstance(item, list):
            stack.extend((v, [*where, i]) for i, v in enumerate(item))
    if found:
        raise problems.invalid(*sorted(found, key=lambda f: [str(x) for x in f[0]]))


# -- the service ----------------------------------------------------------------------------------
service_router = APIRouter(tags=["service"], dependencies=[Depends(authorize)])


@service_router.get(
    "/healthz",
    summary="Is the service up? (503 when the store does not answer)",
    response_model=Health,
    responses={503: {"model": Health, "description": "Degraded: the store does not answer"}},
)
def healthz(svc: Svc, response: Response) -> Health:
    health = svc.health()
    if health.status != "ok":
        response.status_code = 503
    return health


@service_router.get(
    "/metrics",
    summary="The store's figures in the Prometheus text format",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text"},
        **responses(503),
    },
)
def prometheus(svc: Svc) -> Response:
    body, kind = metrics.render(svc.store)
    return Response(body, media_type=kind)


# -- pipelines ------------------------------------------------------------------------------------
router = APIRouter(prefix="/api/v1", dependencies=[Depends(authorize)], responses=responses(401, 403))


@router.get(
    "/pipelines",
    tags=["pipelines"],
    summary="List the project's pipelines, with their parameters and schedules",
    response_model=list[PipelineView],
    responses=responses(503),
)
def list_pipelines(svc: Svc) -> list[PipelineView]:
    return svc.pipelines()


@router.post(
    "/pipelines/reload",
    tags=["pipelines"],
    summary="Load the project's pipelines again, after their code changed",
    response_model=list[PipelineView],
    responses=responses(400, 413, 503),
)
def reload_pipelines(svc: Svc, request: Request) -> list[PipelineView]:
    pipelines = svc.reload()
    on_reload: Callable[[], None] | None = request.app.state.on_reload
    if on_reload is not None:
        on_reload()
    return pipelines


@router.get(
    "/pipelines/{name}",
    tags=["pipelines"],
    summary="Show a pipeline",
    response_model=PipelineView,
    responses=responses(404, 422, 503),
)
def get_pipeline(svc: Svc, name: PipelineName) -> PipelineView:
    return svc.pipeline(name)


@router.post(
    "/pipelines/{name}/runs",
    tags=["pipelines", "runs"],
    summary="Start a run of a pipeline: the schedulers drive it",
    description=(
        "An unfinished run of the pipeline with the same parameters is answered instead of a second "
        "one: a run's key is unique among unfinished runs."
    ),
    status_code=201,
    response_model=RunView,
    responses=responses(400, 404, 413, 422, 503),
)
def trigger(
    svc: Svc,
    who: Who,
    name: PipelineName,
    body: Annotated[
        TriggerRequest | None, Body(description="The run's parameters; strings are parsed")
    ] = None,
) -> RunView:
    params = body.params if body is not None else {}
    svc.entry(name)  # an unknown pipeline is 404 before anything else
    check_values(params, ["body", "params"])
    return svc.trigger(name, params, from_text=True, created_by=user_of(who))


# -- runs -----------------------------------------------------------------------------------------
@router.get(
    "/runs",
    tags=["runs"],
    summary="List runs, newest first, a page at a time",
    response_model=RunPage,
    responses=responses(422, 503),
)
def list_runs(
    svc: Svc,
    who: Who,
    pipeline: Annotated[str | None, Query(description="Only runs of this pipeline")] = None,
    state: Annotated[RunState | None, Query(description="Only runs in this state")] = None,
    since: Annotated[
        When, Query(description="Only runs created at or after this time (UTC if no zone)")
    ] = None,
    until: Annotated[When, Query(description="Only runs created before this time (UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="Runs on the page")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Runs skipped, newest first")] = 0,
) -> RunPage:
    if pipeline is not None and not storable(pipeline):
        return RunPage(items=[], total=0, offset=offset, limit=limit)  # no pipeline has that name
    return svc.runs(
        pipeline=pipeline,
        state=state,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
        teams=visible_teams(who),
    )


@router.get(
    "/runs/{run_id}",
    tags=["runs"],
    summary="Show a run: its tasks, their attempts and durations, its partitions",
    response_model=RunDetail,
    responses=responses(404, 422, 503),
)
def get_run(
    svc: Svc,
    run_id: RunId,
    tasks: Annotated[
        bool, Query(description="false: the run's state and counts only, without its tasks (to poll it)")
    ] = True,
) -> RunDetail:
    return svc.run(run_id, tasks=tasks)


@router.post(
    "/runs/{run_id}/cancel",
    tags=["runs"],
    summary="Cancel a run: nothing new starts, running tasks are stopped",
    response_model=RunView,
    responses=responses(404, 409, 413, 422, 503),
)
def cancel_run(svc: Svc, run_id: RunId) -> RunView:
    return svc.cancel(run_id)


@router.post(
    "/runs/{run_id}/retry",
    tags=["runs"],
    summary="Retry a run's failed and cancelled tasks; succeeded ones are not run again",
    response_model=RunView,
    responses=responses(404, 409, 413, 422, 503),
)
def retry_run(svc: Svc, run_id: RunId) -> RunView:
    return svc.retry(run_id)


@router.get(
    "/runs/{run_id}/logs",
    tags=["runs"],
    summary="Read the logs of a run's tasks, or follow one task's log as it grows",
    response_model=list[LogView],
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Each attempt's log (JSON); with follow=true, the latest attempt's log as text",
        },
        **responses(400, 404, 422, 503),
    },
)
def logs(
    svc: Svc,
    request: Request,
    run_id: RunId,
    task: Annotated[str | None, Query(description="A task name, label or instance id (default: all)")] = None,
    attempt: Annotated[int | None, Query(description="Only this attempt (default: every attempt)")] = None,
    tail: Annotated[int | None, Query(ge=1, description="Only the last lines of each log")] = None,
    follow: Annotated[
        bool, Query(description="Stream the task's latest attempt's log as text until the attempt ends")
    ] = False,
) -> Any:
    if not follow:
        return svc.logs(run_id, task, attempt=attempt, tail=tail)
    if task is None:
        svc.run(run_id)  # an unknown run is 404 first
        raise problems.invalid((["query", "task"], "follow=true needs a task: the one whose log to follow"))
    svc.log_file(run_id, task, attempt)  # an unknown run or task is 404 now, not in the stream
    stream = _follow(request, svc, run_id, task, attempt)
    return StreamingResponse(stream, media_type="text/plain; charset=utf-8")


async def _follow(
    request: Request, svc: Service, run_id: str, task: str, attempt: int | None
) -> AsyncIterator[bytes]:
    """The log's bytes as they are written, until its attempt ends (or a newer one starts); while
    the task waits to start, wait for its first attempt. Ends early if the client goes away."""
    path: str | None = None
    offset = 0
    while not await request.is_disconnected():
        try:
            current, state = await run_in_threadpool(svc.log_file, run_id, task, attempt)
        except ConveyorError:
            return  # the store went away: end the stream
        if path is None:
            if current is None:
                if state not in WAITING:
                    return  # ended without an attempt (skipped, cancelled)
                await asyncio.sleep(FOLLOW_EVERY)
                continue
            path = current
        ended = current != path or state != "running"
        while chunk := await run_in_threadpool(logfiles.chunk, path, offset):  # a piece at a time
            offset += len(chunk)
            yield chunk  # sent before the next is read: the client's pace bounds what is held
        if ended:
            return
        await asyncio.sleep(FOLLOW_EVERY)


@router.get(
    "/runs/{run_id}/result",
    tags=["runs"],
    summary="Download a task's stored result: JSON, or a pickle",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/json": {"schema": {}},
                "application/x-python-pickle": {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "The return value: JSON, or a pickle (load it only from a server you trust)",
        },
        **responses(400, 404, 406, 409, 422, 503),
    },
)
def result(
    svc: Svc,
    run_id: RunId,
    task: Annotated[str, Query(description="The task: its name, label or instance id")],
    accept: Annotated[
        str | None,
        Header(description="application/json: only a JSON result (a pickle is 406); default: either"),
    ] = None,
) -> Response:
    artifact = svc.result(run_id, task)
    if artifact.media_type != "application/json" and not _takes_pickle(accept):
        raise HTTPException(
            406,
            f"the result of {ids.shown(task)} of run {run_id} is a pickle, not JSON: ask with Accept: "
            "application/x-python-pickle (Python: Client(url, trust_pickles=True)), from a server you trust",
        )
    return Response(artifact.data, media_type=artifact.media_type)


@router.get(
    "/runs/{run_id}/notebook",
    tags=["runs"],
    summary="A notebook task's executed notebook as HTML, in a sandbox where none of its scripts run",
    response_class=Response,
    responses={
        200: {
            "content": {"text/html": {"schema": {"type": "string"}}},
            "description": "The rendered notebook (after a failure: up to the failing cell), served "
            "with a Content-Security-Policy of its own: sandbox, no script, no network",
        },
        **responses(400, 404, 409, 422, 503),
    },
)
def notebook(
    svc: Svc,
    run_id: RunId,
    task: Annotated[str, Query(description="The notebook task: its name, label or instance id")],
) -> Response:
    html = svc.notebook(run_id, task)
    return Response(html, media_type="text/html; charset=utf-8", headers=serving.HEADERS)


def _takes_pickle(accept: str | None) -> bool:
    kinds = {part.split(";")[0].strip().lower() for part in (accept or "*/*").split(",")}
    return bool(kinds & {"*/*", "application/*", "application/x-python-pickle"})


# -- a run drawn: the web UI's graph, live updates and timeline ----------------------------------
@router.get(
    "/runs/{run_id}/graph",
    tags=["runs"],
    summary="The run's task graph laid out for drawing: nodes with coordinates, edges as polylines",
    response_model=GraphView,
    responses=responses(404, 422, 503),
)
def get_graph(
    svc: Svc,
    run_id: RunId,
    group: Annotated[
        Grouping,
        Query(
            description="A node per instance (instances), per task (tasks), or per task when the run "
            f"has more than {GROUP_ABOVE} instances (auto)"
        ),
    ] = "auto",
) -> GraphView:
    return svc.graph(run_id, group)


@router.get(
    "/runs/{run_id}/changes",
    tags=["runs"],
    summary="What changed in a run after a cursor: the run, and only the instances whose state changed",
    response_model=ChangesView,
    responses=responses(404, 422, 503),
)
def get_changes(
    svc: Svc,
    run_id: RunId,
    since: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_CURSOR,
            description="The cursor of the graph or of the last changes (0: every instance)",
        ),
    ] = 0,
) -> ChangesView:
    return svc.changes(run_id, since)


@router.get(
    "/runs/{run_id}/attempts",
    tags=["runs"],
    summary="Every attempt of a run's tasks, by start: a timeline",
    response_model=list[GanttBar],
    responses=responses(404, 422, 503),
)
def list_attempts(svc: Svc, run_id: RunId) -> list[GanttBar]:
    return svc.attempts(run_id)


# -- backfills ------------------------------------------------------------------------------------
@router.get(
    "/backfills",
    tags=["backfills"],
    summary="List backfills, newest first",
    response_model=list[BackfillView],
    responses=responses(422, 503),
)
def list_backfills(
    svc: Svc,
    state: Annotated[BackfillState | None, Query(description="Only backfills in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="How many")] = 50,
) -> list[BackfillView]:
    return svc.backfills(state=state, limit=limit)


@router.post(
    "/backfills",
    tags=["backfills"],
    summary="Start a backfill: one run per logical date of a range, at most max_parallel at a time",
    status_code=201,
    response_model=BackfillView,
    responses=responses(400, 404, 413, 422, 503),
)
def create_backfill(svc: Svc, body: BackfillRequest) -> BackfillView:
    svc.entry(body.pipeline)  # an unknown pipeline is 404 before anything else
    check_values(body.params, ["body", "params"])
    try:
        return svc.backfill(
            body.pipeline,
            body.start,
            body.end,
            every=body.every,
            max_parallel=body.max_parallel,
            params=body.params,
            from_text=True,
        )
    except ParameterError as exc:  # the range's fields are named as the command line names them
        exc.problems = {_RANGE.get(k, k): v for k, v in exc.problems.items()}
        raise


#: The command line's names of a backfill's range, and the body's.
_RANGE = {"from": "start", "to": "end"}


@router.get(
    "/backfills/{backfill_id}",
    tags=["backfills"],
    summary="Show a backfill: each date's state and run",
    response_model=BackfillView,
    responses=responses(404, 422, 503),
)
def get_backfill(svc: Svc, backfill_id: BackfillId) -> BackfillView:
    return svc.get_backfill(backfill_id)


@router.post(
    "/backfills/{backfill_id}/cancel",
    tags=["backfills"],
    summary="Cancel a backfill: no more dates start, the going runs are cancelled",
    response_model=BackfillView,
    responses=responses(404, 413, 422, 503),
)
def cancel_backfill(svc: Svc, backfill_id: BackfillId) -> BackfillView:
    return svc.cancel_backfill(backfill_id)


# -- schedules and schedulers ---------------------------------------------------------------------
@router.get(
    "/schedules",
    tags=["schedules"],
    summary="List the schedules of the project's pipelines",
    response_model=list[ScheduleView],
    responses=responses(503),
)
def list_schedules(svc: Svc) -> list[ScheduleView]:
    return svc.schedules()


@router.post(
    "/schedules/{name}/pause",
    tags=["schedules"],
    summary="Pause a pipeline's schedule: no run starts on its ticks",
    response_model=ScheduleView,
    responses=responses(404, 413, 422, 503),
)
def pause_schedule(svc: Svc, name: PipelineName) -> ScheduleView:
    return svc.pause(name, True)


@router.post(
    "/schedules/{name}/resume",
    tags=["schedules"],
    summary="Resume a pipeline's schedule (missed ticks run as after downtime: catchup decides)",
    response_model=ScheduleView,
    responses=responses(404, 413, 422, 503),
)
def resume_schedule(svc: Svc, name: PipelineName) -> ScheduleView:
    return svc.pause(name, False)


@router.get(
    "/schedulers",
    tags=["schedulers"],
    summary="List the schedulers, their heartbeats and the leases they hold",
    response_model=list[SchedulerView],
    responses=responses(503),
)
def list_schedulers(svc: Svc, who: Who) -> list[SchedulerView]:
    """Every scheduler; the leases on runs outside the caller's teams are left out."""
    views = svc.schedulers()
    teams = visible_teams(who)
    if teams is None:
        return views
    seen: dict[str, bool] = {}

    def visible(run_id: str) -> bool:
        if run_id not in seen:
            try:
                svc.store.get_run(run_id, teams=teams)
                seen[run_id] = True
            except RunNotFound:
                seen[run_id] = False
        return seen[run_id]

    return [v.model_copy(update={"leases": [x for x in v.leases if visible(x.run)]}) for v in views]
