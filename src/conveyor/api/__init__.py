"""The REST API: a thin FastAPI layer over ``conveyor.service.Service``.

    app = create_app(Service(open_store(url), project))

Only this package knows HTTP. The routes are in ``routes`` (people's in ``people``), who may
call them in ``access`` (every route gets its ``authorize``), the mapping of errors to answers in
``problems``, the body-size limit in ``limits``, the refusal of other web sites in ``origins``,
the interactive docs in ``docs``, ``nosniff`` on every answer in ``headers``;
the execution API for remote runners (``conveyor.execution.routes``) is mounted beside them;
``reference`` renders docs/api.md from the OpenAPI schema. ``conveyor server``
(``conveyor.server``) serves the app with uvicorn.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from conveyor import ui
from conveyor.api import docs, people, problems, routes
from conveyor.api.access import Access
from conveyor.api.headers import NoSniff
from conveyor.api.limits import MAX_BODY, BodyLimit
from conveyor.api.origins import SameOrigin, allowed_hosts
from conveyor.service import Service

DESCRIPTION = """\
Trigger, follow and manage the runs of a Conveyor project's pipelines. Runs are driven by the
scheduler daemons that share the server's store (`conveyor server` runs one).

Errors are `{"detail": "..."}` (401, 403, 404, 406, 409, 413, 400, 503), or FastAPI's list of bad
fields (422). Its limits (logs, parameters, ids, bodies) are in docs/security.md.

Authentication is on as soon as one user exists in the server's store (`conveyor users add`):
send a token as `Authorization: Bearer cvy_...` (`conveyor tokens create`), or the web UI's
session cookie. Without one the answer is 401; with a role too weak for the route, 403 naming
the role needed; a run, pipeline, backfill or team of a team the caller is not in is 404, as if
it did not exist. Roles per team: viewer (reads), member (triggers, cancels, retries,
backfills), lead (reloads, pauses schedules, manages members); admins manage users, teams and
quotas. `/healthz` is public, `/metrics` too when the server was started with
`--public-metrics`. With no user at all the API asks no one to sign in, and `conveyor server`
listens on loopback only.
"""

#: Where the interactive docs' scripts and styles are served.
DOCS_ASSETS = "/docs-assets"

TAGS = [
    {"name": "pipelines", "description": "The pipelines the project's conveyor.toml lists"},
    {"name": "runs", "description": "Runs: trigger, list, inspect, cancel, retry; logs and results"},
    {"name": "backfills", "description": "One run per logical date of a range"},
    {"name": "schedules", "description": "Pipelines that start on a cron schedule"},
    {"name": "schedulers", "description": "The scheduler daemons that drive the runs"},
    {"name": "service", "description": "Health and metrics"},
    {"name": "people", "description": "Sign-in, users, tokens, teams, roles, quotas and the audit"},
]


def create_app(
    service: Service,
    *,
    max_body: int = MAX_BODY,
    on_reload: Callable[[], None] | None = None,
    listen: str | None = None,
    public_metrics: bool = False,
) -> FastAPI:
    """The API over ``service``. ``max_body``: the largest request body in bytes (413 beyond);
    ``on_reload``: called after the pipelines were reloaded (the server signals its scheduler);
    ``listen``: the address the server listens on (requests must name it, or a loopback name:
    ``origins``); ``public_metrics``: ``/metrics`` answers without a token."""
    app = _app(max_body)
    app.add_middleware(SameOrigin, hosts=allowed_hosts(listen))
    app.add_middleware(NoSniff)  # outermost: on every answer, the refusals too
    app.state.service = service
    app.state.on_reload = on_reload
    app.state.access = Access(service.store, public_metrics=public_metrics)
    from conveyor.git import GitRemote

    # the project's git remote at /git/: outside the schema, and before the API's body limit
    app.add_middleware(GitRemote, service=service, access=app.state.access)
    ui.mount(app)  # the web UI at / and /ui/, outside the schema
    from conveyor.execution.routes import mount

    # the execution API for remote runners, outside the schema
    mount(app, service.store, log_limit=service.limits.log_limit)
    return app


def openapi_schema() -> dict[str, Any]:
    """The API's OpenAPI schema (no service needed)."""
    return _app(MAX_BODY).openapi()


def _operation_id(route: APIRoute) -> str:
    return route.name


def _app(max_body: int) -> FastAPI:
    from conveyor import __version__

    # /docs and /redoc with Swagger UI's and ReDoc's files from the package, not a CDN: the docs
    # work on a machine without internet access
    app = FastAPIOffline(
        docs_url=None,  # served by ``docs``: with the web UI's policy, and no inline script
        redoc_url=None,
        static_url=DOCS_ASSETS,
        title="Conveyor",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        generate_unique_id_function=_operation_id,
    )
    docs.mount(app, DOCS_ASSETS)
    problems.install(app)
    app.include_router(routes.service_router)
    app.include_router(routes.router)
    app.include_router(people.router)
    app.state.routes = [
        *routes.service_router.routes,
        *routes.router.routes,
        *people.router.routes,
    ]  # 405's Allow
    app.add_middleware(BodyLimit, max_body=max_body)
    return app


__all__ = ["MAX_BODY", "create_app", "openapi_schema"]
