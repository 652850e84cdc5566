"""Tokens: shown once, kept hashed, refused once expired, revoked or their user disabled."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from auth.conftest import World
from conveyor.auth import people, tokens
from conveyor.errors import ParameterError
from conveyor.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    people.add_user(s, "test", "alice")
    return s


def test_a_secret_is_shown_once_and_only_its_hash_is_stored(store: Store, tmp_path: Path) -> None:
    issued = people.create_token(store, "test", "alice", label="laptop")
    assert issued.secret.startswith("cvy_") and len(issued.secret) == 4 + 43
    with sqlite3.connect(tmp_path / "c.db") as db:
        rows = db.execute("SELECT * FROM tokens").fetchall()
    assert rows and all(issued.secret not in str(row) and issued.secret[4:] not in str(row) for row in rows)
    assert rows[0][2] == tokens.digest(issued.secret)


def test_a_token_signs_in_its_user_until_expired_revoked_or_disabled(store: Store) -> None:
    issued = people.create_token(store, "test", "alice", expires="1h")
    now = issued.record.created_at
    found = tokens.verify(store, issued.secret, now=now + 10)
    assert found is not None and found[0].user == "alice"
    assert tokens.verify(store, issued.secret, now=now + 3601) is None  # expired
    assert tokens.verify(store, issued.secret + "x", now=now) is None
    assert tokens.verify(store, "not a token", now=now) is None
    people.revoke_token(store, "test", issued.record.id)
    assert tokens.verify(store, issued.secret, now=now + 10) is None
    other = people.create_token(store, "test", "alice")
    people.disable_user(store, "test", "alice")
    assert tokens.verify(store, other.secret, now=now + 10) is None
    with pytest.raises(ParameterError, match="disabled"):
        people.create_token(store, "test", "alice")


def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    issued = people.create_token(store, "test", "alice")
    t0 = issued.record.created_at
    tokens.verify(store, issued.secret, now=t0 + 1)
    tokens.verify(store, issued.secret, now=t0 + 30)
    assert [t.last_used_at for t in store.list_tokens("alice")] == [t0 + 1]
    tokens.verify(store, issued.secret, now=t0 + 62)
    assert [t.last_used_at for t in store.list_tokens("alice")] == [t0 + 62]


def test_durations_are_read_with_their_unit() -> None:
    assert tokens.parse_duration("30d") == 30 * 86400 and tokens.parse_duration("90m") == 5400
    with pytest.raises(ParameterError, match="30d"):
        tokens.parse_duration("soon")


def test_the_server_refuses_expired_revoked_and_disabled_tokens(world: World) -> None:
    def status(secret: str) -> int:
        headers = {"Authorization": f"Bearer {secret}"}
        return httpx.get(f"{world.url}/api/v1/runs", headers=headers, timeout=30).status_code

    short = people.create_token(world.store, "test", "member", expires="1s")
    revoked = people.create_token(world.store, "test", "member")
    assert status(revoked.secret) == 200
    people.revoke_token(world.store, "test", revoked.record.id)
    assert status(revoked.secret) == 401
    time.sleep(1.1)
    assert status(short.secret) == 401
    assert status(world.tokens["viewer"]) == 200
    people.disable_user(world.store, "test", "viewer")
    assert status(world.tokens["viewer"]) == 401
    assert status("cvy_" + "x" * 43) == 401
