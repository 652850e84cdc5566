"""The web UI: one page of plain JavaScript, served by ``conveyor server`` beside the REST API.

    GET /          the page (static/index.html); hash routes #/pipelines, #/runs, #/runs/ID, ...
    GET /ui/NAME   its scripts and style sheet, from static/ in this package
    GET /ui/signin the sign-in page (static/signin.html): a token traded for a session cookie

The page and its files are public; everything they fetch from the API is authorized (a 401
sends the page to the sign-in page; ``conveyor.api.access``).

Nothing here is in the OpenAPI schema. The page builds its DOM from the API's JSON with
``textContent`` and ``createElement`` only, and is served with a Content-Security-Policy that
allows scripts from this server alone, so text from a run (a parameter, a log line) never runs.
The graph's layout comes from the API (``/runs/{id}/graph``); no third-party code is shipped.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

STATIC = Path(__file__).resolve().parent / "static"

#: Only this server's scripts, styles and API; no framing, no inline script.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag), so an upgraded server serves its new page
}


class _Static(StaticFiles):
    """The UI's files, with the page's security headers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


def mount(app: FastAPI) -> None:
    """Serve the page at ``/`` and its files at ``/ui/``, outside the OpenAPI schema."""

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)

    @app.get("/ui/signin", include_in_schema=False)
    def signin() -> FileResponse:
        return FileResponse(STATIC / "signin.html", media_type="text/html; charset=utf-8", headers=HEADERS)

    app.mount("/ui", _Static(directory=STATIC), name="ui")


__all__ = ["mount"]
