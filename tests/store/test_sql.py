"""The store contract, against a real database file, and its migrations."""

from __future__ import annotations

import multiprocessing
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import RunBusy, RunNotFound, SchemaError, StaleEpochError, StoreError
from conveyor.store import Batch, InstanceRecord, RunRecord, Store, open_store
from conveyor.store.records import AttemptRecord, TransitionRecord
from conveyor.store.schema import SCHEMA_REVISION, metadata
from conveyor.store.sql import SqlStore


def make_run(run_id: str = "20261122-000000-aaaaaa", key: str = "k1", created: float = 1.0) -> RunRecord:
    return RunRecord(
        id=run_id,
        pipeline="daily",
        target="p.py:daily",
        params={"day": "2026-11-01"},
        key=key,
        state="pending",
        created_at=created,
        total=2,
    )


def instances(run_id: str) -> list[InstanceRecord]:
    return [
        InstanceRecord(run_id, "a1", "extract", "extract(day=1)", {"day": 1}, [], targets=["out/1"]),
        InstanceRecord(run_id, "b2", "load", "load(x=<a1>)", {"x": {"$upstream": "a1"}}, ["a1"]),
    ]


def test_runs_are_found_by_id_prefix_and_listed_newest_first(store: Store) -> None:
    store.create_run(make_run("20261122-000000-aaaaaa", created=1.0), instances("20261122-000000-aaaaaa"))
    store.create_run(make_run("20261122-000001-bbbbbb", created=2.0, key="k2"), [])
    assert store.get_run("20261122-000000-aaaaaa").params == {"day": "2026-11-01"}
    assert store.get_run("20261122-000001").id == "20261122-000001-bbbbbb"
    with pytest.raises(RunNotFound, match="ambiguous"):
        store.get_run("20261122")
    with pytest.raises(RunNotFound, match="no run 'zzz'"):
        store.get_run("zzz")
    assert [r.id for r in store.list_runs()] == ["20261122-000001-bbbbbb", "20261122-000000-aaaaaa"]
    assert [r.id for r in store.list_runs(limit=1)] == ["20261122-000001-bbbbbb"]
    assert store.list_runs(state="succeeded") == []
    latest = store.latest_run("k1")
    assert latest is not None and latest.counts == {"pending": 2}
    assert store.latest_run("nope") is None


def test_instances_keep_graph_order_and_json_fields(store: Store) -> None:
    run = make_run()
    store.create_run(run, instances(run.id))
    got = store.instances(run.id)
    assert [i.id for i in got] == ["a1", "b2"]
    assert got[1].params == {"x": {"$upstream": "a1"}} and got[1].upstream == ["a1"]
    assert got[0].targets == ["out/1"]
    store.add_instances(run.id, [InstanceRecord(run.id, "c3", "report", "report()", {}, ["b2"])])
    assert [i.id for i in store.instances(run.id)] == ["a1", "b2", "c3"]
    assert store.get_run(run.id).total == 3


def test_a_batch_is_written_in_one_commit(store: Store) -> None:
    run = make_run()
    store.create_run(run, instances(run.id))
    epoch = store.acquire(run.id, "host:1", ttl=30, now=100.0)
    batch = Batch(
        instances=[{"id": "a1", "state": "running", "attempts": 1, "started_at": 101.0}],
        attempts_started=[AttemptRecord(run.id, "a1", 1, "running", 101.0, log_path="/logs/a1/1.log")],
        transitions=[
            TransitionRecord("a1", "pending", "ready", 101.0, "upstream done", 0),
            TransitionRecord("a1", "ready", "running", 101.0, "attempt 1 admitted", 1),
        ],
        run={"state": "running", "started_at": 101.0},
    )
    store.commit(run.id, epoch, batch, lease_until=131.0)
    done = Batch(
        instances=[{"id": "a1", "state": "succeeded", "ended_at": 102.0, "result": "/a/a1.json"}],
        attempts_ended=[
            {"instance_id": "a1", "number": 1, "state": "succeeded", "ended_at": 102.0, "error": None}
        ],
        transitions=[TransitionRecord("a1", "running", "succeeded", 102.0, "attempt 1 succeeded", 1)],
    )
    store.commit(run.id, epoch, done, lease_until=132.0)
    a1 = next(i for i in store.instances(run.id) if i.id == "a1")
    assert (a1.state, a1.attempts, a1.result, a1.started_at, a1.ended_at) == (
        "succeeded",
        1,
        "/a/a1.json",
        101.0,
        102.0,
    )
    (attempt,) = store.attempts(run.id, "a1")
    assert (attempt.state, attempt.ended_at, attempt.log_path) == ("succeeded", 102.0, "/logs/a1/1.log")
    assert [(h.old, h.new) for h in store.history(run.id, "a1")] == [
        ("pending", "ready"),
        ("ready", "running"),
        ("running", "succeeded"),
    ]
    r = store.get_run(run.id)
    assert r.state == "running" and r.lease_expires == 132.0 and r.counts == {"succeeded": 1, "pending": 1}


def test_leases_fence_stale_writers(store: Store) -> None:
    run = make_run()
    store.create_run(run, instances(run.id))
    first = store.acquire(run.id, "host:1", ttl=30, now=100.0)
    with pytest.raises(RunBusy, match="being driven by host:1"):
        store.acquire(run.id, "host:2", ttl=30, now=110.0)
    second = store.acquire(run.id, "host:2", ttl=30, now=110.0, is_dead=lambda owner: owner == "host:1")
    assert second == first + 1
    stale = Batch(instances=[{"id": "a1", "state": "running"}])
    with pytest.raises(StaleEpochError, match="taken over"):
        store.commit(run.id, first, stale, lease_until=200.0)
    assert {i.state for i in store.instances(run.id)} == {"pending"}  # the stale write left nothing
    store.commit(run.id, second, stale, lease_until=140.0)
    third = store.acquire(run.id, "host:3", ttl=30, now=141.0)  # expired: free to take
    assert third == second + 1
    store.release(run.id, third)
    assert store.get_run(run.id).owner is None


def test_acquire_unknown_run(store: Store) -> None:
    with pytest.raises(RunNotFound):
        store.acquire("nope", "host:1", ttl=30)


def test_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    store = SqlStore(f"sqlite:///{tmp_path / 'm.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    cfg = Config()
    from conveyor.store import sql

    cfg.set_main_option("script_location", str(sql._MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_REVISION == store.revision()


def test_an_older_schema_names_the_upgrade_command(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    SqlStore(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '0000'")
    with pytest.raises(
        SchemaError,
        match=rf"has schema 0000, this Conveyor needs {SCHEMA_REVISION}; run: conveyor db upgrade",
    ):
        open_store(f"sqlite:///{path}")


def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(SchemaError, match="has tables but no Conveyor schema version"):
        open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:  # and left untouched
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["customers"]


def test_unusable_urls_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is not a database URL"):
        open_store("not a url")
    with pytest.raises(StoreError, match=r"cannot open store mysql\+nodriver://u:\*\*\*@h/db"):
        open_store("mysql+nodriver://u:secret@h/db")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match=r"dir\.db"):
        open_store(f"sqlite:///{tmp_path / 'dir.db'}")


def _open_at_once(url: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        open_store(url).close()
        results.put("ok")
    except Exception as exc:
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_processes_opening_a_new_store_together_all_succeed(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Several schedulers starting on an empty database: one creates the schema, the others wait
    for it and find it (none sees tables without a schema version)."""
    ctx = multiprocessing.get_context("fork")
    for round_ in range(4):
        if dialect == "sqlite":
            url = f"sqlite:///{tmp_path / f'new-{round_}.db'}"
        else:
            url = request.getfixturevalue("postgres").create_database(f"new_{uuid.uuid4().hex[:12]}")
        n = 8
        barrier, results = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(n)]
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert got == ["ok"] * n, got
        s = open_store(url)
        assert isinstance(s, SqlStore) and s.revision() == SCHEMA_REVISION
        s.close()
