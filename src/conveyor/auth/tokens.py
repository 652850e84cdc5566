"""Tokens: a secret shown once, kept only as its sha256 (the secret is 256 random bits, so a
fast hash is right: nothing to guess), looked up by that hash.

    cvy_ + 43 URL-safe characters          the secret (``conveyor tokens create``)
    id: 12 hex characters                  public: how a token is listed and revoked
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from conveyor.auth.roles import Principal, Role
from conveyor.errors import ParameterError, PeopleNotFound
from conveyor.store import Store
from conveyor.store.records import TokenRecord

PREFIX = "cvy_"

#: A session's life (the web UI's sign-in), seconds.
SESSION_TTL = 12 * 3600.0

#: ``last_used_at`` is written at most this often (seconds).
TOUCH_EVERY = 60.0

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class Issued:
    """A token just created: its secret (shown once, never stored) and its record."""

    secret: str
    record: TokenRecord


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(
    store: Store,
    user: str,
    *,
    now: float,
    label: str = "",
    expires_in: float | None = None,
    kind: str = "api",
) -> Issued:
    """A new token for ``user`` (who must exist and not be disabled)."""
    found = store.get_user(user)
    if found is None:
        raise PeopleNotFound(f"no user {user!r}; create one with conveyor users add {user}")
    if found.disabled_at is not None:
        raise ParameterError(f"user {user!r} is disabled: no token can be created for them")
    secret = PREFIX + secrets.token_urlsafe(32)
    rec = TokenRecord(
        id=secrets.token_hex(6),
        user=user,
        hash=digest(secret),
        created_at=now,
        label=label,
        kind=kind,
        expires_at=None if expires_in is None else now + expires_in,
    )
    store.add_token(rec)
    return Issued(secret, rec)


def verify(store: Store, secret: str, *, now: float) -> tuple[Principal, TokenRecord] | None:
    """The principal a secret signs in, with its token; None when the secret is unknown, its
    token expired or revoked, or its user disabled."""
    if not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    wanted = digest(secret)
    found = store.token_by_hash(wanted)
    if found is None:
        return None
    token, user = found
    if not hmac.compare_digest(token.hash, wanted):
        return None
    if token.revoked_at is not None or user.disabled_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or token.last_used_at < now - TOUCH_EVERY:
        store.touch_token(token.id, now, every=TOUCH_EVERY)
    roles = {team: Role.parse(role) for team, role in store.roles_of(user.name).items()}
    return Principal(user.name, user.admin, roles), token


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``2w``, ``3600`` (seconds)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if m is None or float(m[1]) <= 0:
        raise ParameterError(
            f"duration {text!r} must be a positive number and a unit: 30d, 12h, 90m, 2w",
            {"expires": "not a duration"},
        )
    return float(m[1]) * _UNITS[m[2] or "s"]


__all__ = ["PREFIX", "SESSION_TTL", "Issued", "create", "digest", "parse_duration", "verify"]
