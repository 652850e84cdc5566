"""Requests from other web sites are refused: a page open in the user's browser must not be able
to change runs with the browser's session cookie, or at all while the server has no users
(cross-site request forgery), nor read them through a domain name that points at this server
(DNS rebinding).

- ``Host`` must name this server: a loopback name or address, this machine's name, or the
  ``--host`` it listens on (anything, when it listens on every address).
- A request that changes something (not GET, HEAD or OPTIONS) sent by a browser from another
  origin is refused: its ``Origin`` names another host than ``Host``, or its ``Sec-Fetch-Site``
  says cross-site. Clients that are not browsers (curl, httpx, the CLI) send neither.

Both answer 403 with one line saying why.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(listen: str | None = None) -> frozenset[str] | None:
    """The host names a request may use; None: any (the server listens on every address)."""
    if listen is not None and _is_any(listen):
        return None
    names = {*LOOPBACK, socket.gethostname().lower()}
    if listen:
        names.add(listen.lower().strip("[]"))
    return frozenset(names)


class SameOrigin:
    """ASGI middleware refusing cross-site changes and requests for unknown hosts."""

    def __init__(self, app: Any, hosts: Iterable[str] | None = ()) -> None:
        self.app = app
        self.hosts = None if hosts is None else frozenset(hosts) or allowed_hosts()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        why = self._refuse(scope["method"], host, headers)
        if why is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": why}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _refuse(self, method: str, host: str, headers: dict[str, str]) -> str | None:
        name = _hostname(host)
        if self.hosts is not None and name not in self.hosts:
            return (
                f"host {host!r} is not this server's; use http://127.0.0.1 (or the address given "
                "to conveyor server --host)"
            )
        if method in SAFE:
            return None
        if headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return "a request from another web site may not change anything here"
        origin = headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
            return f"a request from {origin} may not change anything here"
        if origin == "null":
            return "a request from an opaque origin may not change anything here"
        return None


def _hostname(host: str) -> str:
    """``Host`` without its port, lower case; IPv6 without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_any(listen: str) -> bool:
    try:
        return ipaddress.ip_address(listen.strip("[]")).is_unspecified
    except ValueError:
        return False
