"""Attempt tokens: what lets a runner on another machine write its one attempt, and nothing else.

    cva1.<key id>.<base64url(JSON claims)>.<base64url(HMAC-SHA256(key, "cva1.<key id>.<claims>"))>

The claims name the attempt (run, instance, attempt number), the token's kind and its expiry.
A ``start`` token is minted by the driver when it submits the attempt to an engine and lives long
enough to wait in the engine's queue (``START_TTL``); it can only begin the attempt. ``begin``
answers with a ``run`` token (``RUN_TTL``), which every heartbeat renews: a long attempt never
holds a long-lived token, and a silent one soon holds none.

The keys live in the store (``Store.signing_key``, ``Store.verifying_key``), so any server
verifies what any other minted and no server keeps state of its own. A token says *which*
attempt it may write; the store's conditional updates say *whether*: a token of an attempt
declared lost or already ended can write nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.store import Store

PREFIX = "cva1"  # Conveyor attempt token, version 1

#: Seconds a start token is good for: long enough to wait in an engine's queue.
START_TTL = 24 * 3600.0
#: Seconds a run token is good for; every heartbeat's answer carries a renewed one.
RUN_TTL = 600.0
#: Seconds of clock difference forgiven when checking an expiry.
LEEWAY = 30.0
#: A signing key signs for this long, then a new one is made; the old one still verifies until
#: the longest-lived token it signed has expired.
ROTATE_AFTER = 7 * 24 * 3600.0
#: Seconds the current key is remembered before the store is asked again.
KEY_CACHE = 60.0

Kind = Literal["start", "run"]


class TokenRefused(ConveyorError):
    """The attempt token is missing, malformed, forged or expired (401)."""

    status = 401


class TokenForbidden(TokenRefused):
    """The token is good, but not for this: another attempt, or a start token used past begin (403)."""

    status = 403


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says."""

    run_id: str
    instance: str
    attempt: int
    kind: Kind
    expires: float
    issued: float
    key: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class _Keys:
    """Keys read from the store lately, by store URL, each for ``KEY_CACHE`` seconds: a server
    asks its store once a minute, not at every request, and still keeps no state of its own (a
    key deleted from the store is refused everywhere within a minute)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secrets: dict[tuple[str, str], tuple[float, bytes]] = {}
        self.current: dict[str, tuple[float, str, bytes]] = {}

    def signing(self, store: Store, now: float) -> tuple[str, bytes]:
        with self.lock:
            got = self.current.get(store.url)
        if got is not None and now < got[0]:
            return got[1], got[2]
        kid, secret = store.signing_key(now, ROTATE_AFTER, START_TTL + LEEWAY)
        with self.lock:
            self.current[store.url] = (now + KEY_CACHE, kid, secret)
        return kid, secret

    def verifying(self, store: Store, kid: str) -> bytes | None:
        now = time.monotonic()
        with self.lock:
            got = self.secrets.get((store.url, kid))
        if got is not None and now < got[0]:
            return got[1]
        secret = store.verifying_key(kid)
        with self.lock:
            if secret is None:
                self.secrets.pop((store.url, kid), None)
            else:
                self.secrets[(store.url, kid)] = (now + KEY_CACHE, secret)
        return secret


_KEYS = _Keys()


def mint(
    store: Store,
    run_id: str,
    instance: str,
    attempt: int,
    *,
    kind: Kind = "start",
    ttl: float | None = None,
    now: float | None = None,
) -> str:
    """A token for attempt ``attempt`` of ``instance`` in ``run_id``: ``start`` (the driver's,
    given to the engine with the job; default ``START_TTL``) or ``run`` (``RUN_TTL``)."""
    now = time.time() if now is None else now
    ttl = (START_TTL if kind == "start" else RUN_TTL) if ttl is None else ttl
    kid, secret = _KEYS.signing(store, now)
    claims = {"run": run_id, "ins": instance, "n": attempt, "k": kind, "exp": now + ttl, "iat": now}
    head = f"{PREFIX}.{kid}.{_b64(json.dumps(claims, separators=(',', ':')).encode())}"
    return f"{head}.{_b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())}"


def read(store: Store, token: str, *, now: float | None = None) -> Claims:
    """The claims of a genuine, unexpired token, or ``TokenRefused`` saying what is wrong."""
    now = time.time() if now is None else now
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != PREFIX:
        raise TokenRefused("not an attempt token (expected cva1.<key>.<claims>.<signature>)")
    _, kid, body, sig = parts
    secret = _KEYS.verifying(store, kid)
    if secret is None:
        raise TokenRefused(f"the attempt token's key {kid!r} is unknown to this store (rotated out?)")
    want = hmac.new(secret, f"{PREFIX}.{kid}.{body}".encode(), hashlib.sha256).digest()
    try:
        genuine = hmac.compare_digest(want, _unb64(sig))
        c = json.loads(_unb64(body))
        claims = Claims(
            str(c["run"]), str(c["ins"]), int(c["n"]), c["k"], float(c["exp"]), float(c["iat"]), kid
        )
    except (ValueError, TypeError, KeyError, binascii.Error):
        genuine = False
    if not genuine:
        raise TokenRefused("the attempt token's signature does not match: it was altered or forged")
    if claims.kind not in ("start", "run"):
        raise TokenRefused(f"the attempt token's kind {claims.kind!r} is unknown")
    if now > claims.expires + LEEWAY:
        raise TokenRefused(
            f"the attempt token expired {now - claims.expires:.0f}s ago; a runner renews its token "
            "with each heartbeat"
        )
    return claims


def verify(
    store: Store,
    token: str | None,
    run_id: str,
    instance: str,
    attempt: int,
    *,
    kinds: tuple[Kind, ...] = ("run",),
    now: float | None = None,
) -> Claims:
    """The claims of ``token`` if it may write attempt ``attempt`` of ``instance`` in ``run_id``
    with one of ``kinds``; else ``TokenRefused`` (401: missing, malformed, forged, expired) or
    ``TokenForbidden`` (403: another attempt's, or the wrong kind)."""
    if not token:
        raise TokenRefused("an attempt token is needed: Authorization: Bearer <token>")
    claims = read(store, token, now=now)
    if (claims.run_id, claims.instance, claims.attempt) != (run_id, instance, attempt):
        raise TokenForbidden(
            f"this token is for attempt {claims.attempt} of {claims.instance} in run {claims.run_id}, "
            f"not attempt {attempt} of {instance} in run {run_id}"
        )
    if claims.kind not in kinds:
        raise TokenForbidden(
            "a start token can only begin its attempt; use the token begin answered with"
            if claims.kind == "start"
            else f"a {claims.kind} token cannot do this"
        )
    return claims
