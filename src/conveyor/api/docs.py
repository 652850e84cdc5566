"""The interactive docs, /docs (Swagger UI) and /redoc (ReDoc), served as the web UI is: with its
Content-Security-Policy (this server's scripts only, no framing) and no inline script. Their
scripts and styles come from the package (``fastapi_offline``), never from a CDN.

    GET /docs             Swagger UI's page
    GET /docs/swagger.js  the script that starts it on /openapi.json
    GET /redoc            ReDoc's page
    GET /docs/redoc.js    the script that starts it
    GET /docs/redoc.css   its page's style

ReDoc writes its styles into ``<style>`` elements as it renders: its page's policy allows those
that carry the answer's own random nonce (which ReDoc is given), and no other inline style; and
its search runs in a worker its script makes from a ``blob:``.
"""

from __future__ import annotations

import secrets
from html import escape

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from conveyor.ui import HEADERS, POLICY

#: Swagger UI, started by a script of this server: an inline one would need the policy to allow it.
SWAGGER_START = """\
const spec = document.getElementById("swagger-ui").dataset.spec;
window.ui = SwaggerUIBundle({
  url: spec,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""

#: ReDoc, started by a script of this server, with the nonce its styles need.
REDOC_START = """\
const element = document.getElementById("redoc");
Redoc.init(element.dataset.spec, { nonce: element.dataset.nonce }, element);
"""


def mount(app: FastAPI, assets: str) -> None:
    """Serve the docs' pages on ``app``, outside the schema; ``assets``: where the package's
    scripts and styles for them are served."""
    title = escape(app.title)

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        root = escape(request.scope.get("root_path", ""))
        spec = f"{root}{escape(app.openapi_url or '/openapi.json')}"
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{root}{assets}/swagger-ui.css">
<link rel="icon" href="{root}{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-spec="{spec}"></div>
<script src="{root}{assets}/swagger-ui-bundle.js"></script>
<script src="{root}/docs/swagger.js"></script>
</body>
</html>
"""
        return HTMLResponse(page, headers=HEADERS)

    @app.get("/docs/swagger.js", include_in_schema=False)
    def swagger_start() -> Response:
        return Response(SWAGGER_START, media_type="text/javascript; charset=utf-8", headers=HEADERS)

    @app.get("/docs/redoc.js", include_in_schema=False)
    def redoc_start() -> Response:
        return Response(REDOC_START, media_type="text/javascript; charset=utf-8", headers=HEADERS)

    @app.get("/docs/redoc.css", include_in_schema=False)
    def redoc_style() -> Response:
        return Response("body { margin: 0; padding: 0; }\n", media_type="text/css", headers=HEADERS)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = escape(request.scope.get("root_path", ""))
        spec = f"{root}{escape(app.openapi_url or '/openapi.json')}"
        nonce = secrets.token_urlsafe(18)
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="stylesheet" href="{root}/docs/redoc.css">
<link rel="icon" href="{root}{assets}/favicon.png">
</head>
<body>
<div id="redoc" data-spec="{spec}" data-nonce="{nonce}"></div>
<script src="{root}{assets}/redoc.standalone.js"></script>
<script src="{root}/docs/redoc.js"></script>
</body>
</html>
"""
        policy = POLICY.replace("style-src 'self'", f"style-src 'self' 'nonce-{nonce}'; worker-src blob:")
        return HTMLResponse(page, headers={**HEADERS, "Content-Security-Policy": policy})
