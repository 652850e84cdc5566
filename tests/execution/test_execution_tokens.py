"""Attempt tokens: minted and verified over a real store's keys."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from conveyor.execution import tokens
from conveyor.execution.tokens import TokenForbidden, TokenRefused, mint, verify
from conveyor.store import Store, open_store


def test_a_token_verifies_for_its_attempt_only(store: Store) -> None:
    tok = mint(store, "r1", "inst", 2)
    c = verify(store, tok, "r1", "inst", 2, kinds=("start",))
    assert (c.run_id, c.instance, c.attempt, c.kind) == ("r1", "inst", 2, "start")
    assert c.expires - c.issued == tokens.START_TTL
    for other in (("r1", "inst", 1), ("r1", "other", 2), ("r2", "inst", 2)):
        with pytest.raises(TokenForbidden, match="this token is for attempt 2 of inst in run r1"):
            verify(store, tok, *other, kinds=("start",))


def test_a_start_token_only_begins(store: Store) -> None:
    with pytest.raises(TokenForbidden, match="a start token can only begin its attempt"):
        verify(store, mint(store, "r1", "inst", 1), "r1", "inst", 1, kinds=("run",))
    run = mint(store, "r1", "inst", 1, kind="run")
    assert verify(store, run, "r1", "inst", 1).expires - time.time() <= tokens.RUN_TTL


def test_a_tampered_token_is_refused(store: Store) -> None:
    tok = mint(store, "r1", "inst", 1, kind="run")
    prefix, kid, body, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["n"] = 2  # the attempt number changed, the signature kept
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    for bad in (f"{prefix}.{kid}.{forged}.{sig}", tok[:-3] + ("AAA" if not tok.endswith("AAA") else "BBB")):
        with pytest.raises(TokenRefused, match="signature does not match"):
            verify(store, bad, "r1", "inst", 2)
    with pytest.raises(TokenRefused, match="not an attempt token"):
        verify(store, "hello", "r1", "inst", 1)
    with pytest.raises(TokenRefused, match="an attempt token is needed"):
        verify(store, None, "r1", "inst", 1)


def test_an_expired_token_is_refused_past_the_leeway(store: Store) -> None:
    now = time.time()
    tok = mint(store, "r1", "inst", 1, kind="run", ttl=60, now=now - 100)  # expired 40 s ago
    with pytest.raises(TokenRefused, match=r"expired 40s ago"):
        verify(store, tok, "r1", "inst", 1, now=now)
    verify(store, tok, "r1", "inst", 1, now=now - 15)  # 25 s late: within the leeway


def test_a_key_rotates_and_the_old_one_still_verifies(store: Store) -> None:
    now = time.time()
    old = mint(store, "r1", "inst", 1, now=now)
    later = now + tokens.ROTATE_AFTER + tokens.KEY_CACHE + 1
    new = mint(store, "r1", "inst", 1, now=later)
    assert old.split(".")[1] != new.split(".")[1]  # a new key signs
    verify(store, old, "r1", "inst", 1, kinds=("start",), now=now + 10)
    # long after: the old key is dropped from the store, and its tokens with it
    much_later = later + tokens.ROTATE_AFTER + tokens.START_TTL + tokens.KEY_CACHE + 120
    mint(store, "r1", "inst", 1, now=much_later)
    assert store.verifying_key(old.split(".")[1]) is None


def test_another_store_knows_no_key_of_this_one(store: Store, tmp_path: Path) -> None:
    other = open_store(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with pytest.raises(TokenRefused, match=r"key .* is unknown to this store"):
            verify(other, mint(store, "r1", "inst", 1), "r1", "inst", 1, kinds=("start",))
    finally:
        other.close()


def test_a_key_deleted_from_the_store_verifies_no_more(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlalchemy as sa

    from conveyor.store.schema import signing_keys

    monkeypatch.setattr(tokens, "KEY_CACHE", 0.0)  # servers read keys again at once, not after a minute
    tok = mint(store, "r1", "inst", 1, kind="run")
    verify(store, tok, "r1", "inst", 1)
    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(sa.delete(signing_keys))
    with pytest.raises(TokenRefused, match="is unknown to this store"):
        verify(store, tok, "r1", "inst", 1)
    fresh = mint(store, "r1", "inst", 1, kind="run")
    assert fresh.split(".")[1] != tok.split(".")[1]
    verify(store, fresh, "r1", "inst", 1)
