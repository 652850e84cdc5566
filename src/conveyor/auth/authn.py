"""Who is asking: an ``Authenticator`` turns a request into a ``Principal``, or None.

The one built in reads a token: ``Authorization: Bearer cvy_...`` (the CLI, the client, curl),
else the web UI's session cookie (``conveyor_session``, set by ``POST /api/v1/session``).

Where OIDC would plug in: an ``OidcAuthenticator`` would verify the identity provider's ID token
(or the session the sign-in page's redirect flow created from it) and map its claims to a user
and their teams, returning the same ``Principal``; ``conveyor.api.access`` asks every
authenticator of ``app.state.authenticators`` in turn, so it would be added beside this one and
nothing else would change. The roles stay in the store (``conveyor teams grant``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from conveyor.auth import tokens
from conveyor.auth.roles import Principal
from conveyor.store import Store

#: The web UI's session cookie.
SESSION_COOKIE = "conveyor_session"


class Request(Protocol):
    """What an authenticator reads of a request (a Starlette ``Request`` is one)."""

    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Principal | None:
        """The signed-in principal; None when the request signs in no one."""
        ...


def bearer(request: Request) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``, else of the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(SESSION_COOKIE) or None


class TokenAuthenticator:
    """Tokens of the store: ``conveyor tokens create``, and the web UI's sessions."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def authenticate(self, request: Request) -> Principal | None:
        secret = bearer(request)
        if secret is None:
            return None
        found = tokens.verify(self.store, secret, now=time.time())
        return None if found is None else found[0]


__all__ = ["SESSION_COOKIE", "Authenticator", "Request", "TokenAuthenticator", "bearer"]
