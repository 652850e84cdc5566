"""The quota ledger on SQLite and on a real PostgreSQL: holdings taken within limits only, given
back exactly once, swept when their attempts end, and never past a limit however many take at
once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.store import schema as t
from conveyor.store.ledger import CLUSTER, Held, Waiting
from conveyor.store.sql import SqlStore

GiB = 2**30


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        url = str(request.getfixturevalue("postgres").create_database(f"t_{uuid.uuid4().hex[:12]}"))
    s = SqlStore(url)
    try:
        yield s
    finally:
        s.close()


def _held(i: int, team: str = "a", cpu: int = 2, memory: int = GiB, user: str = "ann") -> Held:
    return Held(
        "run1", f"i{i}", 1, team, user, {"cpu": cpu, "memory": memory}, scheduler="s1", taken_at=100.0
    )


def _attempt(store: SqlStore, iid: str, state: str, number: int = 1) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(t.attempts).values(
                run_id="run1", instance_id=iid, number=number, state=state, started_at=1.0
            )
        )


def test_a_team_holds_up_to_its_limits_and_no_further(store: SqlStore) -> None:
    limits = {"cpu": 4, "memory": 8 * GiB}
    assert store.hold(_held(1), limits) and store.hold(_held(2), limits)
    assert not store.hold(_held(3), limits)  # cpu 6 of 4
    assert store.in_use() == {"a": {"cpu": 4, "memory": 2 * GiB}}
    assert [h.instance_id for h in store.holdings()] == ["i1", "i2"]  # the refused one holds nothing
    assert store.hold(_held(2), limits)  # taking twice holds once
    assert store.in_use()["a"]["cpu"] == 4
    assert store.hold(_held(4, cpu=0, memory=GiB), limits)  # memory fits; cpu not asked
    assert not store.hold(_held(5, cpu=0, memory=7 * GiB), limits)
    assert store.hold(_held(6, team="b", cpu=64), {})  # team b has no limits: only counted
    assert store.in_use()["b"] == {"cpu": 64, "memory": GiB}


def test_the_cluster_ledger_bounds_every_team_together(store: SqlStore) -> None:
    assert store.hold(_held(1, cpu=4), {"cpu": 8}, capacity={"cpu": 6})
    assert not store.hold(_held(2, team="b", cpu=4), {"cpu": 8}, capacity={"cpu": 6})
    assert store.in_use() == {"a": {"cpu": 4, "memory": GiB}, CLUSTER: {"cpu": 4, "memory": GiB}}
    assert store.give_back([("run1", "i1", 1)], now=200.0) == 1
    assert store.in_use() == {}  # both ledgers it was counted in


def test_a_holding_returns_once_and_charges_decayed_usage(store: SqlStore) -> None:
    limits = {"cpu": 4}
    store.hold(_held(1), limits)
    charged = store.give_back(
        [("run1", "i1", 1)], 160.0, charge=lambda h, now: now - h.taken_at, half_life=60
    )
    again = store.give_back([("run1", "i1", 1)], 170.0, charge=lambda h, now: 1000.0)
    assert (charged, again) == (1, 0)
    assert store.in_use() == {}
    usage = store.usage(now=220.0, half_life=60)  # 60 s charged, one half-life ago
    assert usage[("a", "")] == pytest.approx(30.0) and usage[("a", "ann")] == pytest.approx(30.0)
    assert store.hold(_held(1, cpu=4), limits)  # all of it is free again


def test_sweeping_returns_what_ended_attempts_held_whoever_recorded_the_end(store: SqlStore) -> None:
    limits = {"cpu": 8}
    for i in range(4):
        store.hold(_held(i), limits)
    _attempt(store, "i0", "succeeded")
    _attempt(store, "i1", "lost")
    _attempt(store, "i2", "running")  # i3: never launched (its scheduler died first)
    assert store.sweep_holdings(now=130.0, unused_after=60) == 2
    assert sorted(h.instance_id for h in store.holdings()) == ["i2", "i3"]
    assert store.sweep_holdings(now=161.0, unused_after=60) == 1  # i3, a minute after it was taken
    assert [h.instance_id for h in store.holdings()] == ["i2"] and store.in_use()["a"]["cpu"] == 2


def test_many_threads_taking_at_once_never_pass_the_limit(store: SqlStore) -> None:
    won: list[int] = []

    def take(i: int) -> None:
        if store.hold(_held(i, cpu=1), {"cpu": 10}, capacity={"cpu": 12}):
            won.append(i)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(40)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(won) == 10 and store.in_use()["a"]["cpu"] == 10


def test_waiting_demands_and_reasons(store: SqlStore) -> None:
    store.publish_waiting("s1", [Waiting("s1", "a", "ann", 3, {"cpu": 1}, 50.0)], now=100.0)
    store.publish_waiting("s2", [Waiting("s2", "b", "bob", 1, {"cpu": 2}, 60.0)], now=90.0)
    assert [(w.scheduler, w.team, w.waiting) for w in store.waiting(fresh_after=95.0)] == [("s1", "a", 3)]
    store.publish_waiting("s1", [], now=101.0)
    assert store.waiting(fresh_after=95.0) == []
    store.set_waits("run1", {"i1": ("quota", "team quota: cpu 4 of 4 in use")}, now=10.0)
    store.set_waits("run1", {"i1": ("quota", "team quota: cpu 4 of 4 in use")}, now=20.0)
    assert store.waits("run1") == {"i1": ("quota", "team quota: cpu 4 of 4 in use", 10.0)}  # since kept
    store.set_waits("run1", {"i1": ("fair_share", "fair share"), "i2": ("quota", "q")}, now=30.0)
    assert store.waits("run1")["i1"] == ("fair_share", "fair share", 30.0)
    store.clear_waits("run1", ["i1"])
    assert list(store.waits("run1")) == ["i2"]
    store.clear_waits("run1")
    assert store.waits("run1") == {}
