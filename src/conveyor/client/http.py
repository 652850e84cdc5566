"""The HTTP transport: the REST API of ``conveyor server`` (``/api/v1``, ``conveyor.api``), its
JSON parsed into the views and its error answers turned back into ConveyorErrors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter, ValidationError

from conveyor.errors import (
    BackfillNotFound,
    ConveyorError,
    Forbidden,
    NotFound,
    ParameterError,
    PipelineNotFound,
    RunBusy,
    RunNotFound,
    ServerError,
    StoreError,
    Unauthenticated,
    UntrustedResult,
)
from conveyor.service import Artifact
from conveyor.views import (
    BackfillView,
    GraphView,
    Health,
    LogView,
    PipelineView,
    RunDetail,
    RunPage,
    RunView,
    SchedulerView,
    ScheduleView,
)

if TYPE_CHECKING:
    import httpx

V = TypeVar("V")

_PIPELINE = TypeAdapter(PipelineView)
_PIPELINES = TypeAdapter(list[PipelineView])
_RUN = TypeAdapter(RunView)
_DETAIL = TypeAdapter(RunDetail)
_GRAPH = TypeAdapter(GraphView)
_PAGE = TypeAdapter(RunPage)
_LOGS = TypeAdapter(list[LogView])
_BACKFILL = TypeAdapter(BackfillView)
_BACKFILLS = TypeAdapter(list[BackfillView])
_SCHEDULE = TypeAdapter(ScheduleView)
_SCHEDULES = TypeAdapter(list[ScheduleView])
_SCHEDULERS = TypeAdapter(list[SchedulerView])
_HEALTH = TypeAdapter(Health)

API = "/api/v1"


#: The kinds of result a client takes: JSON, and pickles only from a server it trusts.
JSON = "application/json"
PICKLE = "application/x-python-pickle"


class Http:
    """The service behind a server's REST API. ``trust_pickles``: load a task's result that is a
    pickle (which runs code the pickle names); else only JSON results are taken."""

    def __init__(
        self, url: str, timeout: float = 30.0, *, token: str | None = None, trust_pickles: bool = False
    ) -> None:
        """``token``: sent as ``Authorization: Bearer`` (default: ``$CONVEYOR_TOKEN``, else the
        one ``conveyor login`` kept for this server, ``credentials``)."""
        import httpx

        from conveyor.client.credentials import token_for

        self.url = url.rstrip("/")
        token = token or token_for(self.url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.trust_pickles = trust_pickles
        try:
            self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        except httpx.InvalidURL as exc:
            raise ServerError(
                f"the server URL {url!r} is not a URL ({exc}); write it like http://127.0.0.1:8080"
            ) from None

    # -- pipelines --------------------------------------------------------------------------------
    def pipelines(self) -> list[PipelineView]:
        return self._get(_PIPELINES, "/pipelines")

    def pipeline(self, name: str) -> PipelineView:
        return self._get(_PIPELINE, f"/pipelines/{_q(name)}")

    def reload(self) -> list[PipelineView]:
        return self._post(_PIPELINES, "/pipelines/reload")

    # -- runs -------------------------------------------------------------------------------------
    def trigger(self, name: str, params: Mapping[str, Any]) -> RunView:
        return self._post(_RUN, f"/pipelines/{_q(name)}/runs", {"params": dict(params)})

    def runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> RunPage:
        query = {
            "pipeline": pipeline,
            "state": state,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
            "limit": limit,
            "offset": offset,
        }
        return self._get(_PAGE, "/runs", query)

    def run(self, run_id: str, *, tasks: bool = True) -> RunDetail:
        return self._get(_DETAIL, f"/runs/{_q(run_id)}", None if tasks else {"tasks": "false"})

    def cancel(self, run_id: str) -> RunView:
        return self._post(_RUN, f"/runs/{_q(run_id)}/cancel")

    def graph(self, run_id: str, group: str = "auto") -> GraphView:
        return self._get(_GRAPH, f"/runs/{_q(run_id)}/graph", {"group": group})

    def retry(self, run_id: str) -> RunView:
        return self._post(_RUN, f"/runs/{_q(run_id)}/retry")

    def logs(
        self, run_id: str, task: str | None = None, *, attempt: int | None = None, tail: int | None = None
    ) -> list[LogView]:
        return self._get(_LOGS, f"/runs/{_q(run_id)}/logs", {"task": task, "attempt": attempt, "tail": tail})

    def result(self, run_id: str, task: str) -> Artifact:
        """The task's result: JSON; a pickle only with ``trust_pickles`` (else ``UntrustedResult``,
        whatever the server sends)."""
        accept = f"{JSON}, {PICKLE}" if self.trust_pickles else JSON
        path = f"{API}/runs/{_q(run_id)}/result"
        answer = self._send("GET", path, params={"task": task}, headers={"Accept": accept})
        what = f"the result of {task} of run {run_id}"
        if answer.status_code == 406 or (answer.status_code < 400 and not self._trusted(answer)):
            raise UntrustedResult(
                f"{what} is a pickle, which runs code of the server's choosing when loaded; if you "
                f"trust the server at {self.url}, load it with Client({self.url!r}, trust_pickles=True)"
            )
        answer = self._check(answer, path)
        return Artifact(answer.content, _kind(answer))

    def _trusted(self, answer: httpx.Response) -> bool:
        return self.trust_pickles or _kind(answer) == JSON

    # -- backfills --------------------------------------------------------------------------------
    def backfill(
        self,
        pipeline: str,
        start: str,
        end: str,
        *,
        every: str = "day",
        max_parallel: int = 1,
        params: Mapping[str, Any] | None = None,
    ) -> BackfillView:
        body = {
            "pipeline": pipeline,
            "start": start,
            "end": end,
            "every": every,
            "max_parallel": max_parallel,
            "params": dict(params or {}),
        }
        return self._post(_BACKFILL, "/backfills", body)

    def backfills(self, *, state: str | None = None, limit: int = 50) -> list[BackfillView]:
        return self._get(_BACKFILLS, "/backfills", {"state": state, "limit": limit})

    def get_backfill(self, backfill_id: str) -> BackfillView:
        return self._get(_BACKFILL, f"/backfills/{_q(backfill_id)}")

    def cancel_backfill(self, backfill_id: str) -> BackfillView:
        return self._post(_BACKFILL, f"/backfills/{_q(backfill_id)}/cancel")

    # -- schedules, schedulers, health --------------------------------------------------------------
    def schedules(self) -> list[ScheduleView]:
        return self._get(_SCHEDULES, "/schedules")

    def pause(self, pipeline: str, paused: bool = True) -> ScheduleView:
        return self._post(_SCHEDULE, f"/schedules/{_q(pipeline)}/{'pause' if paused else 'resume'}")

    def schedulers(self) -> list[SchedulerView]:
        return self._get(_SCHEDULERS, "/schedulers")

    def health(self) -> Health:
        answer = self._send("GET", "/healthz")
        if answer.status_code == 503:  # degraded: the body says why
            try:
                return _HEALTH.validate_json(answer.content)
            except ValidationError:
                pass
        return self._parse(_HEALTH, self._check(answer, "/healthz"))

    def kick(self, *, submitted: bool = False, backfill: str | None = None) -> None:
        pass  # the server runs a scheduler, which steps the backfills too

    def close(self) -> None:
        self._http.close()

    # -- plumbing ---------------------------------------------------------------------------------
    def _get(self, shape: TypeAdapter[V], path: str, query: Mapping[str, Any] | None = None) -> V:
        params = {k: v for k, v in (query or {}).items() if v is not None}
        return self._parse(shape, self._call("GET", API + path, params=params))

    def _post(self, shape: TypeAdapter[V], path: str, body: Any = None) -> V:
        return self._parse(shape, self._call("POST", API + path, json=body))

    def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self._check(self._send(method, path, **kw), path)

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        import httpx

        try:
            return self._http.request(method, path, **kw)
        except (httpx.TransportError, OSError) as exc:
            raise ServerError(
                f"cannot reach the Conveyor server at {self.url}: {exc or type(exc).__name__}; "
                "start one with conveyor server"
            ) from None

    def _check(self, answer: httpx.Response, path: str) -> httpx.Response:
        status = answer.status_code
        if status < 400:
            return answer
        detail = _detail(answer)
        if status == 401:
            raise Unauthenticated(
                f"the server at {self.url} asks to sign in; set CONVEYOR_TOKEN or run conveyor login "
                f"--server {self.url}"
            )
        if status == 403:
            raise Forbidden(f"the server at {self.url} refused: {detail}")
        if status == 404:
            raise _not_found(path)(detail if isinstance(detail, str) else f"{path}: not found")
        if status == 422:
            raise _parameter_error(detail)
        message = detail if isinstance(detail, str) else json.dumps(detail)
        if status == 409:
            raise RunBusy(message)
        if status == 503:
            raise StoreError(message)
        if status in (400, 413):
            raise ConveyorError(message)
        raise ServerError(
            f"the Conveyor server at {self.url} failed on {answer.request.method} {path} "
            f"({status}): {message[:300]}; its log has the details"
        )

    def _parse(self, shape: TypeAdapter[V], answer: httpx.Response) -> V:
        try:
            return shape.validate_json(answer.content)
        except ValidationError as exc:
            errors = exc.errors()
            where = f"{errors[0]['loc']}: {errors[0]['msg']}" if errors else str(exc)
            raise ServerError(
                f"the Conveyor server at {self.url} answered {answer.request.url.path} with an "
                f"unexpected shape ({where}); is it the same version of Conveyor?"
            ) from None


def _kind(answer: httpx.Response) -> str:
    return str(answer.headers.get("content-type", JSON)).split(";")[0].strip().lower()


def _q(part: str) -> str:
    return quote(part, safe="")


def _detail(answer: httpx.Response) -> Any:
    try:
        body = answer.json()
    except ValueError:
        return answer.text.strip() or answer.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


def _not_found(path: str) -> type[NotFound]:
    """The NotFound the route names: a run (its logs, its result), a backfill, a pipeline."""
    if path.startswith(f"{API}/runs"):
        return RunNotFound
    if path.startswith(f"{API}/backfills"):
        return BackfillNotFound
    if path.startswith((f"{API}/pipelines", f"{API}/schedules")):
        return PipelineNotFound
    return NotFound


def _parameter_error(detail: Any) -> ParameterError:
    """FastAPI's 422 (a list of ``{"loc": [..., NAME], "msg": ...}``) as one ParameterError
    naming each field."""
    if isinstance(detail, str):
        return ParameterError(detail)
    problems: dict[str, str] = {}
    for item in detail if isinstance(detail, list) else []:
        if isinstance(item, dict):
            loc = item.get("loc") or ["?"]
            problems[str(loc[-1])] = str(item.get("msg", "invalid"))
    if not problems:
        return ParameterError(f"the server refused the request: {detail}")
    listed = "; ".join(f"{name}: {msg}" for name, msg in problems.items())
    return ParameterError(f"invalid parameters: {listed}", problems)
