"""The execution API's routes: what a runner on another machine writes about its one attempt.

    POST /execution/v1/attempts/{run_id}/{instance}/{attempt}/begin       start or run token
    POST /execution/v1/attempts/{run_id}/{instance}/{attempt}/waiting     run token
    POST /execution/v1/attempts/{run_id}/{instance}/{attempt}/heartbeat   run token
    PUT  /execution/v1/attempts/{run_id}/{instance}/{attempt}/log?offset=N
    POST /execution/v1/attempts/{run_id}/{instance}/{attempt}/end

Each one is the store call a local runner makes itself (``conveyor.recorder.Recorder``), with
the same conditional update: a stale attempt is answered 409 and writes nothing. A token that
is missing, forged or expired is answered 401, one for another attempt or of the wrong kind 403,
each with one line ``{"detail": "..."}``. The routes keep nothing between requests: any server
on the same store answers any of them. Mount them with ``mount(app, store)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from conveyor import logfiles
from conveyor.execution import CHUNK, tokens
from conveyor.limits import LOG_LIMIT
from conveyor.store import Store
from conveyor.store.records import STALE, Holder

PREFIX = "/execution/v1/attempts/{run_id}/{instance}/{attempt}"


class HolderBody(BaseModel):
    """The attempt that holds the instance's claim: another run's, executing it now."""

    run_id: str
    attempt: int
    owner: str
    expires: float
    state: str = "running"
    result: str | None = None


class BeginBody(BaseModel):
    owner: str = Field(description="host:pid of the runner")
    take_from: tuple[str, int] | None = Field(None, description="a dead holder's (run, attempt)")


class Begun(BaseModel):
    execute: bool = Field(description="True: execute the task; False: wait for the holder")
    holder: HolderBody | None = None
    token: str = Field(description="the run token: heartbeats renew it")


class Waiting(BaseModel):
    holder: HolderBody


class StatusBody(BaseModel):
    state: str
    error: str | None = None
    result: str | None = None


class Seen(BaseModel):
    claim: HolderBody | None
    status: StatusBody | None
    now: float = Field(description="the server's clock, to compare the claim's expiry with")


class Beaten(BaseModel):
    token: str


class Logged(BaseModel):
    size: int = Field(description="bytes of the attempt's log the server holds: send from there")


class EndBody(BaseModel):
    status: str = Field(pattern="^(succeeded|failed|cancelled)$")
    ended_at: float
    result: str | None = None
    error: str | None = None
    waited_for: str | None = None
    outputs: str | None = None


class Ended(BaseModel):
    recorded: bool
    again: bool = Field(False, description="the same end was recorded already (a retried request)")


def _store(request: Request) -> Store:
    return request.app.state.execution_store  # type: ignore[no-any-return]


def _bearer(authorization: Annotated[str | None, Header()] = None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def _claims(kinds: tuple[tokens.Kind, ...]) -> Any:
    def check(
        request: Request,
        run_id: str,
        instance: str,
        attempt: int,
        token: Annotated[str | None, Depends(_bearer)],
    ) -> tokens.Claims:
        try:
            return tokens.verify(_store(request), token, run_id, instance, attempt, kinds=kinds)
        except tokens.TokenRefused as exc:
            raise HTTPException(exc.status, str(exc)) from None

    return check


Store_ = Annotated[Store, Depends(_store)]
Starting = Annotated[tokens.Claims, Depends(_claims(("start", "run")))]
Running = Annotated[tokens.Claims, Depends(_claims(("run",)))]

router = APIRouter(prefix=PREFIX, tags=["execution"])


def _renewed(store: Store, c: tokens.Claims) -> str:
    return tokens.mint(store, c.run_id, c.instance, c.attempt, kind="run")


def _stale(what: str) -> HTTPException:
    return HTTPException(409, f"the attempt is no longer current (declared lost, cancelled or ended): {what}")


def _holder(h: Holder | None) -> HolderBody | None:
    if h is None:
        return None
    return HolderBody(
        run_id=h.run_id, attempt=h.attempt, owner=h.owner, expires=h.expires, state=h.state, result=h.result
    )


@router.post("/begin")
def begin(c: Starting, body: BeginBody, store: Store_) -> Begun:
    """Start the attempt: its first heartbeat and the claim of its instance id."""
    got = store.begin_attempt(
        c.run_id, c.instance, c.attempt, body.owner, time.time(), take_from=body.take_from
    )
    if got == STALE:
        raise _stale("do not start it")
    assert got is None or isinstance(got, Holder)
    return Begun(execute=got is None, holder=_holder(got), token=_renewed(store, c))


@router.post("/waiting")
def waiting(c: Running, body: Waiting, store: Store_) -> Seen:
    """What a runner waiting for another attempt of the same instance polls."""
    claim, status = store.waiting_on(c.instance, Holder(**body.holder.model_dump()))
    seen = (
        None if status is None else StatusBody(state=status.state, error=status.error, result=status.result)
    )
    return Seen(claim=_holder(claim), status=seen, now=time.time())


@router.post("/heartbeat")
def heartbeat(c: Running, store: Store_) -> Beaten:
    """Renew the attempt and its claim; the answer carries a renewed run token."""
    if not store.beat_attempt(c.run_id, c.instance, c.attempt, time.time()):
        raise _stale("stop it")
    return Beaten(token=_renewed(store, c))


@router.put("/log")
async def log(c: Running, request: Request, offset: Annotated[int, Query(ge=0)]) -> Logged:
    """Write a chunk of the attempt's log at byte ``offset`` of its log file (where `conveyor
    logs -f` follows it). A chunk sent again rewrites the same bytes; a chunk past the end
    writes nothing: the answer's size says where to send from. Past the log limit the bytes are
    dropped (once, a marker line says so), and the answer says to send on."""
    from starlette.concurrency import run_in_threadpool

    data = await request.body()
    if len(data) > CHUNK:
        raise HTTPException(413, f"a log chunk holds at most {CHUNK} bytes; this one has {len(data)}")
    return await run_in_threadpool(_write_log, request, c, offset, data)


def _write_log(request: Request, c: tokens.Claims, offset: int, data: bytes) -> Logged:
    mine = [a for a in _store(request).attempts(c.run_id, c.instance) if a.number == c.attempt]
    path = mine[0].log_path if mine else None
    if not path:
        home: Path | None = getattr(request.app.state, "execution_home", None)
        if home is None:
            raise HTTPException(409, "the attempt has no log file in the store")
        path = str(home / "logs" / c.run_id / f"{c.instance}-{c.attempt}.log")
    limit: int = getattr(request.app.state, "execution_log_limit", None) or LOG_LIMIT
    return Logged(size=logfiles.write_at(path, offset, data, limit))


@router.post("/end")
def end(c: Running, body: EndBody, store: Store_) -> Ended:
    """Record the attempt's end with the store's conditional update: the first end wins."""
    outputs = body.outputs if body.status == "succeeded" else None
    if store.record_attempt(
        c.run_id, c.instance, c.attempt, body.status, ended_at=body.ended_at, result=body.result,
        error=body.error, waited_for=body.waited_for, outputs=outputs,
    ):  # fmt: skip
        return Ended(recorded=True, again=False)
    mine = [a for a in store.attempts(c.run_id, c.instance) if a.number == c.attempt]
    if mine and mine[0].state == body.status and mine[0].ended_at == body.ended_at:
        return Ended(recorded=True, again=True)  # the runner sent it again after a lost answer
    state = mine[0].state if mine else "unknown"
    raise HTTPException(409, f"the attempt's end was not recorded: it is {state} already")


def mount(app: FastAPI, store: Store, home: Path | None = None, log_limit: int | None = None) -> None:
    """Serve the execution API on ``app`` over ``store``; ``home``: where the log of an attempt
    the store has no log file for is written; ``log_limit``: the bytes of an attempt's log kept
    (default: ``limits``), then a marker line: what a runner sends past it is dropped."""
    app.state.execution_store = store
    app.state.execution_home = home
    app.state.execution_log_limit = log_limit
    app.include_router(router, include_in_schema=False)
