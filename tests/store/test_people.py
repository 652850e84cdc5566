"""The store's people (users, tokens, teams, members, the audit) and runs by team: the same
contract on SQLite, the embedded store and PostgreSQL."""

from __future__ import annotations

import dataclasses

import pytest
from test_sql import instances, make_run

from conveyor.errors import Exists, PeopleNotFound, RunNotFound
from conveyor.store import Store
from conveyor.store.records import TokenRecord


def test_users_are_added_once_listed_and_disabled(store: Store) -> None:
    assert store.count_users() == 0
    store.add_user("alice", admin=True, now=1.0)
    store.add_user("bob", admin=False, now=2.0)
    with pytest.raises(Exists, match="alice"):
        store.add_user("alice", admin=False, now=3.0)
    assert store.count_users() == 2
    assert [(u.name, u.admin) for u in store.list_users()] == [("alice", True), ("bob", False)]
    assert store.disable_user("bob", 4.0).disabled_at == 4.0
    assert store.disable_user("bob", 5.0).disabled_at == 4.0  # once
    with pytest.raises(PeopleNotFound):
        store.disable_user("carol", 5.0)
    assert store.get_user("carol") is None


def test_tokens_are_found_by_hash_revoked_and_touched(store: Store) -> None:
    store.add_user("alice", admin=False, now=1.0)
    rec = TokenRecord(id="t1", user="alice", hash="h" * 64, created_at=1.0, label="ci", expires_at=100.0)
    store.add_token(rec)
    found = store.token_by_hash("h" * 64)
    assert found is not None and found[0] == rec and found[1].name == "alice"
    assert store.token_by_hash("x" * 64) is None
    store.touch_token("t1", 10.0)
    store.touch_token("t1", 20.0)  # within a minute: not written
    assert store.list_tokens("alice")[0].last_used_at == 10.0
    assert store.revoke_token("t1", 30.0).revoked_at == 30.0
    with pytest.raises(PeopleNotFound):
        store.revoke_token("nope", 30.0)
    assert store.list_tokens("bob") == []
    for n, (expires, revoked) in enumerate([(50.0, None), (500.0, None), (500.0, 40.0)]):
        session = TokenRecord(id=f"s{n}", user="alice", hash=f"{n}" * 64, created_at=1.0, kind="session")
        store.add_token(dataclasses.replace(session, expires_at=expires, revoked_at=revoked))
    assert store.drop_sessions(100.0) == 2  # expired, and signed out; API tokens are kept
    assert sorted(k.id for k in store.list_tokens("alice")) == ["s1", "t1"]


def test_teams_members_and_quotas(store: Store) -> None:
    store.add_user("alice", admin=False, now=1.0)
    store.add_team("a", weight=2.0, now=1.0)
    with pytest.raises(Exists):
        store.add_team("a", now=2.0)
    store.grant("a", "alice", "member")
    store.grant("a", "alice", "lead")  # replaces
    assert store.members("a") == [("alice", "lead")]
    assert store.roles_of("alice") == {"a": "lead"}
    with pytest.raises(PeopleNotFound, match="team"):
        store.grant("z", "alice", "lead")
    with pytest.raises(PeopleNotFound, match="user"):
        store.grant("a", "zed", "lead")
    quota = {"limits": {"cpu": 8, "memory": 34359738368}, "runs": 10, "borrow": {"cpu": 4}}
    team = store.set_team("a", weight=3.0, quota=quota)
    assert team.weight == 3.0 and team.quota == quota and store.list_teams() == [team]
    store.revoke("a", "alice")
    assert store.roles_of("alice") == {}
    with pytest.raises(PeopleNotFound):
        store.revoke("a", "alice")


def test_the_audit_is_read_newest_first_by_team(store: Store) -> None:
    store.record_audit("alice", "teams.add", team="a", target="a", now=1.0)
    store.record_audit("bob", "teams.add", team="b", target="b", now=2.0)
    store.record_audit("bob", "users.add", team=None, target="carol", now=3.0)
    assert [a.target for a in store.audit_log()] == ["carol", "b", "a"]
    assert [a.target for a in store.audit_log(teams=["a"])] == ["a"]
    assert [a.target for a in store.audit_log(teams=["a"], actor="bob")] == ["carol", "b", "a"]
    assert [a.target for a in store.audit_log(teams=[], actor="bob")] == ["carol", "b"]


def test_runs_are_looked_up_and_listed_within_teams(store: Store) -> None:
    a = dataclasses.replace(make_run("20261122-000000-aaaaaa", created=1.0), team="a", created_by="alice")
    b = dataclasses.replace(make_run("20261122-000001-bbbbbb", key="k2", created=2.0), team="b")
    store.create_run(a, instances(a.id))
    store.create_run(b, [])
    got = store.get_run("20261122-000000-aaaaaa")
    assert got.team == "a" and got.created_by == "alice"
    assert store.get_run("20261122", teams=["b"]).id == b.id  # the prefix is b's alone among b's
    with pytest.raises(RunNotFound, match="no run"):
        store.get_run(a.id, teams=["b"])
    assert [r.id for r in store.list_runs(teams=["a"])] == [a.id]
    assert store.count_runs(teams=["a", "b"]) == 2 and store.count_runs(teams=[]) == 0
