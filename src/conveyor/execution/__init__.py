"""The execution API: how a runner on another machine reports its one attempt without the
store's credentials (see docs/execution-api.md).

    tokens   attempt-scoped signed tokens (start, run), keys kept in the store
    routes   the FastAPI routes under /execution/v1/attempts/... (``mount``)
    client   ``ApiRecorder``: the runner's ``Recorder`` over HTTP
    local    ``serve_locally``: the routes on loopback, for a run without a server

Importing this package imports neither FastAPI nor httpx: import the module you need.
"""

from __future__ import annotations

from conveyor.execution.tokens import RUN_TTL, START_TTL, Claims, TokenForbidden, TokenRefused, mint, verify

#: The largest chunk of an attempt's log a runner sends at once (bytes).
CHUNK = 256 * 1024

__all__ = ["CHUNK", "RUN_TTL", "START_TTL", "Claims", "TokenForbidden", "TokenRefused", "mint", "verify"]
