"""The run record's store part on SQLite, on a real PostgreSQL and in the embedded store (which
writes it without SQLAlchemy): a run's record is written once (the first says how the run
started), and an instance's inputs are replaced by a later drive of the same run (``conveyor
retry``) without touching the cache's columns of the same row."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.store import schema as t
from conveyor.store.lite import LiteStore, open_lite
from conveyor.store.records import Provenance
from conveyor.store.sql import SqlStore


@pytest.fixture(params=["sqlite", "postgresql", "lite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres").create_database(f"t_{uuid.uuid4().hex[:12]}"))
    else:
        url = f"sqlite:///{tmp_path / 'provenance.db'}"
    s: Any = open_lite(url) if request.param == "lite" else SqlStore(url)
    assert (request.param == "lite") == isinstance(s, LiteStore)
    try:
        yield s
    finally:
        s.close()


def _record(run_id: str = "r1", commit: str | None = "c" * 40, diff: str | None = None) -> Provenance:
    return Provenance(
        run_id=run_id,
        python="3.12.1",
        platform="Linux-x86_64",
        env_hash="e" * 64,
        env_kind="lock:uv.lock",
        created_at=100.0,
        git_commit=commit,
        diff=diff,
        diff_hash="d" * 64 if diff else None,
        source_date_epoch=1700000000.0,
    )


def test_a_runs_record_round_trips_and_the_first_one_stays(store: Any) -> None:
    assert store.provenance("r1") is None  # a run from before records were kept
    first = _record(diff="diff --git a/x b/x\n+é\n")
    store.record_provenance(first)
    store.record_provenance(_record(commit="f" * 40))  # the same run created twice: ignored
    assert store.provenance("r1") == first
    store.record_provenance(_record("r2", commit=None))
    got = store.provenance("r2")
    assert got is not None and got.git_commit is None and got.diff is None


def test_an_instances_inputs_are_replaced_and_the_cache_columns_kept(store: Any) -> None:
    fp = {"from": "a(n=1)", "target": "out/a.txt", "size": 3, "sha256": "1" * 64}
    store.record_inputs("r1", {"i1": [fp], "i2": []})
    with store._tx() as conn:  # the cache's part of the row, written by conveyor.cache
        ip = t.instance_provenance
        conn.execute(
            sa.update(ip).where(ip.c.instance_id == "i1").values(cache_key="k" * 64, reused_from="r0")
        )
    newer = {**fp, "sha256": "2" * 64}
    store.record_inputs("r1", {"i1": [newer]})
    assert store.instance_inputs("r1") == {"i1": [newer], "i2": []}
    assert store.instance_inputs("other") == {}
    with store._tx() as conn:
        row = conn.execute(sa.select(ip.c.cache_key, ip.c.reused_from).where(ip.c.instance_id == "i1")).one()
    assert tuple(row) == ("k" * 64, "r0")


def test_what_each_instance_wrote_is_its_last_successful_attempts(store: Any) -> None:
    a = t.attempts
    wrote = [{"target": "out/a.txt", "size": 1, "sha256": "3" * 64}]
    with store._tx() as conn:
        for iid, n, state, outputs in [
            ("i1", 1, "failed", None),
            ("i1", 2, "succeeded", wrote),
            ("i2", 1, "succeeded", None),  # a task without targets
            ("i3", 1, "running", None),
        ]:
            conn.execute(
                sa.insert(a).values(
                    run_id="r1",
                    instance_id=iid,
                    number=n,
                    state=state,
                    started_at=1.0,
                    outputs=json.dumps(outputs) if outputs else None,
                )
            )
    assert store.succeeded_outputs("r1") == {"i1": wrote, "i2": []}
    assert store.succeeded_outputs("r2") == {}
