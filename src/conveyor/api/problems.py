"""How errors become HTTP answers: one table, and the shapes the OpenAPI schema documents.

    Unauthenticated   401 {"detail": "..."}, WWW-Authenticate: Bearer
    Forbidden         403 {"detail": "..."}
    NotFound (RunNotFound, PipelineNotFound, BackfillNotFound)   404 {"detail": "..."}
    ParameterError    422 in FastAPI's own shape, one entry per bad field (``problems``)
    RunBusy, Exists   409 {"detail": "..."}
    StoreError        503 {"detail": "..."}
    other ConveyorError (LoadError, GraphError, ...)             400 {"detail": "..."}
    a body over the limit (``limits``)                            413 {"detail": "..."}
    anything else: a bug                                          500, its traceback in the log

Every answer is rendered as ASCII JSON with non-finite numbers spelled out, so that no input a
client can send (lone surrogates, NaN) makes the error answer itself fail.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from conveyor import ids
from conveyor.errors import (
    ConveyorError,
    Exists,
    Forbidden,
    NotFound,
    ParameterError,
    RunBusy,
    StoreError,
    Unauthenticated,
)

log = logging.getLogger("conveyor.api")

#: Each kind of error and its status; the first that matches wins (ParameterError: 422, apart).
STATUS: tuple[tuple[type[ConveyorError], int], ...] = (
    (NotFound, 404),
    (RunBusy, 409),
    (Exists, 409),
    (StoreError, 503),
    (Unauthenticated, 401),
    (Forbidden, 403),
)


class Problem(BaseModel):
    """What went wrong, in one line."""

    detail: str = Field(description="What went wrong, and what to do")


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(description='Where: ["body", "params", NAME], ["query", NAME], ...')
    msg: str
    type: str


class Invalid(BaseModel):
    """Each bad field of the request, as FastAPI reports them."""

    detail: list[FieldProblem]


DESCRIPTIONS = {
    401: "No token, or one that is unknown, expired or revoked: sign in",
    403: "The caller's role is not enough; the answer names the role needed",
    400: "The request cannot be carried out: the project's code does not load, the graph is wrong, ...",
    404: "No such run, pipeline, backfill or task",
    406: "The result is a pickle and the request's Accept takes only JSON",
    409: "The run is busy: it is going, or driven elsewhere",
    413: "The request body is larger than the server's limit",
    422: "A field of the request is invalid; each one is named",
    503: "The store does not answer",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route."""
    return {
        code: {"model": Invalid if code == 422 else Problem, "description": DESCRIPTIONS[code]}
        for code in codes
    }


class SafeJSON(JSONResponse):
    """JSON that any value renders to: ASCII (lone surrogates escaped), NaN and infinities as text."""

    def render(self, content: Any) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=True, separators=(",", ":")).encode()


def status_of(exc: ConveyorError) -> int:
    if isinstance(exc, ParameterError):
        return 422
    return next((code for kind, code in STATUS if isinstance(exc, kind)), 400)


def install(app: FastAPI) -> None:
    """Map errors to answers on ``app``."""
    app.add_exception_handler(ConveyorError, _conveyor_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _bug)


def invalid(*problems: tuple[list[str | int], str]) -> RequestValidationError:
    """A 422 naming each bad field: ``(loc, message)`` pairs."""
    return RequestValidationError(
        [{"loc": tuple(loc), "msg": msg, "type": "value_error"} for loc, msg in problems]
    )


async def _conveyor_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ConveyorError)
    if isinstance(exc, ParameterError):
        problems = exc.problems or {"": str(exc)}
        detail = [
            {"loc": locate(request, name), "msg": msg, "type": "value_error"}
            for name, msg in problems.items()
        ]
        return SafeJSON({"detail": detail}, status_code=422)
    status = status_of(exc)
    if status == 503:
        log.warning("%s %s: %s", request.method, ids.shown(request.url.path), ids.shown(str(exc), 300))
        if request.url.path.startswith("/execution/"):  # a runner on an engine: not the store's URL
            return SafeJSON({"detail": "the store does not answer; retry"}, status_code=503)
    if status == 401:
        return SafeJSON({"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
    return SafeJSON({"detail": str(exc)}, status_code=status)


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return SafeJSON({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # every method the path has, not only the first route's
        headers["Allow"] = ", ".join(sorted(_methods(request)))
    return SafeJSON({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


def _methods(request: Request) -> set[str]:
    """The methods of the path the request matches: of every route with the template of the first
    route that matches it, as the router tries them (the app's own routes, then the API's, which
    ``create_app`` lists in ``app.state.routes``)."""
    found: set[str] = set()
    template: str | None = None
    path = request.scope.get("path", "")
    for route in [*request.app.routes, *getattr(request.app.state, "routes", ())]:
        regex, methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is None or not methods or not regex.match(path):
            continue
        template = template or route.path
        if route.path == template:
            found |= set(methods)
    return found


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    # Starlette raises it again after this answer, and the server logs its traceback.
    return SafeJSON(
        {"detail": f"internal error ({type(exc).__name__}); the server's log has the traceback"},
        status_code=500,
    )


def locate(request: Request, name: str) -> list[str | int]:
    """Where a field named by a ``ParameterError`` is in the request: a query or path parameter,
    a field of the body, or a pipeline parameter in the body's ``params``."""
    route = request.scope.get("route")
    query: set[str] = set()
    path: set[str] = set()
    body: set[str] = set()
    if isinstance(route, APIRoute):
        query = {p.alias for p in _flat(route, "query_params")}
        path = {p.alias for p in _flat(route, "path_params")}
        body = _body_fields(route)
    if not name:
        return ["body"] if body else ["query"]
    if name in query:
        return ["query", name]
    if name in path:
        return ["path", name]
    if name in body:
        return ["body", name]
    if "params" in body:
        return ["body", "params", name]
    if name == "pipeline" and "name" in path:  # the pipeline named in the path
        return ["path", "name"]
    return [name]


def _flat(route: APIRoute, kind: str) -> Iterator[Any]:
    stack = [route.dependant]
    while stack:
        dep = stack.pop()
        yield from getattr(dep, kind)
        stack.extend(dep.dependencies)


def _body_fields(route: APIRoute) -> set[str]:
    """The fields of the route's body model (``Model`` or ``Model | None``)."""
    if route.body_field is None:
        return set()
    annotation = route.body_field.field_info.annotation
    names: set[str] = set()
    for kind in getattr(annotation, "__args__", None) or (annotation,):
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= set(kind.model_fields)
    return names


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as strings (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
