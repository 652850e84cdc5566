"""What the web UI polls: a run's instances that changed after a cursor, on SQLite and on a real
PostgreSQL server; and the migration that indexes transitions for it."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.store import Batch, InstanceRecord, RunRecord, Store, open_store
from conveyor.store import changes as changes_module
from conveyor.store import schema as t
from conveyor.store.records import PartitionRecord, TransitionRecord
from conveyor.store.schema import SCHEMA_REVISION, metadata
from conveyor.store.sql import SqlStore

RUN = "20261122-000000-dddddd"


def submitted(store: Store, parts: int, run_id: str = RUN) -> dict[int, int]:
    """A submitted run with one instance per partition (``i0``, ``i1``, ...), every partition
    claimed: their epochs by number."""
    run = RunRecord(
        id=run_id,
        pipeline="wide",
        target="p.py:wide",
        params={},
        key=run_id,
        state="pending",
        created_at=1.0,
        total=parts,
        partitions=parts,
    )
    inst = [InstanceRecord(run_id, f"i{k}", "t", f"t({k})", {}, [], partition=k) for k in range(parts)]
    store.create_run(run, inst, [PartitionRecord(run_id, k, 1) for k in range(parts)])
    epochs = {}
    for _ in range(parts):
        claim = store.claim(f"scheduler-{uuid.uuid4().hex[:6]}", 60, now=time.time())
        assert claim is not None and claim.partition.run_id == run_id
        epochs[claim.partition.number] = claim.partition.epoch
    return epochs


def move(store: Store, epochs: dict[int, int], k: int, *states: str, run_id: str = RUN) -> None:
    """Instance ``i{k}`` goes through ``states`` in one group commit of its partition's driver."""
    steps = list(itertools.pairwise(states))
    batch = Batch(
        instances=[{"id": f"i{k}", "state": states[-1]}],
        transitions=[TransitionRecord(f"i{k}", a, b, time.time(), "test", 0) for a, b in steps],
    )
    store.commit(run_id, epochs[k], batch, lease_until=time.time() + 60, partition=k)


def test_the_instances_that_changed_after_a_cursor_and_the_next_cursor(store: Store) -> None:
    epochs = submitted(store, 3)
    cursor, every = store.changes(RUN, 0)
    assert cursor == 0 and [(i.id, i.state) for i in every] == [
        ("i0", "pending"),
        ("i1", "pending"),
        ("i2", "pending"),
    ]

    move(store, epochs, 0, "pending", "ready", "running")
    first, every = store.changes(RUN, 0)  # 0: every instance, as it is now
    assert first > 0 and [(i.id, i.state) for i in every] == [
        ("i0", "running"),
        ("i1", "pending"),
        ("i2", "pending"),
    ]
    assert store.changes(RUN, first) == (first, [])  # nothing since

    move(store, epochs, 2, "pending", "ready")
    move(store, epochs, 1, "pending", "skipped")
    second, changed = store.changes(RUN, first)
    assert second > first
    assert [(i.id, i.state) for i in changed] == [("i1", "skipped"), ("i2", "ready")]  # in graph order
    move(store, epochs, 2, "ready", "running")
    third, changed = store.changes(RUN, second)
    assert third > second and [(i.id, i.state) for i in changed] == [("i2", "running")]

    # another run's changes are its own
    other = "20261122-000001-eeeeee"
    move(store, submitted(store, 1, run_id=other), 0, "pending", "ready", run_id=other)
    assert store.changes(RUN, third) == (third, [])
    mine, [theirs] = store.changes(other, third)
    assert mine > third and theirs.run_id == other
    assert store.changes("no-such-run", 0) == (0, [])


# -- PostgreSQL: commits that land out of the order of their ids --------------------------------------
@pytest.fixture
def pg(postgres: object) -> Iterator[Store]:
    s = open_store(postgres.create_database(f"t_{uuid.uuid4().hex[:12]}"))  # type: ignore[attr-defined]
    yield s
    s.close()


def in_flight(store: Store, k: int) -> sa.Connection:
    """Partition ``k``'s driver in the middle of a group commit: its fence (the partition's row)
    and its transition written, not committed. Roll it on with ``.commit()``."""
    assert isinstance(store, SqlStore)
    conn = store.engine.connect()
    p, ti = t.partitions, t.task_instances
    conn.execute(p.update().where(p.c.run_id == RUN, p.c.number == k).values(lease_expires=time.time() + 60))
    conn.execute(ti.update().where(ti.c.run_id == RUN, ti.c.id == f"i{k}").values(state="ready"))
    conn.execute(
        t.transitions.insert().values(
            run_id=RUN,
            instance_id=f"i{k}",
            old="pending",
            new="ready",
            at=time.time(),
            cause="test",
            attempt=0,
        )
    )
    return conn


def test_a_cursor_waits_for_a_commit_in_flight_with_an_earlier_id(pg: Store) -> None:
    epochs = submitted(pg, 2)
    move(pg, epochs, 1, "pending", "ready")
    since, _ = pg.changes(RUN, 0)
    slow = in_flight(pg, 0)  # takes the next id...
    move(pg, epochs, 1, "ready", "running")  # ...and this later one lands first
    answers: list[tuple[int, list[InstanceRecord]]] = []
    reader = threading.Thread(target=lambda: answers.append(pg.changes(RUN, since)))
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive()  # waiting for the commit in flight
    slow.commit()
    slow.close()
    reader.join(10)
    [(cursor, changed)] = answers
    assert [(i.id, i.state) for i in changed] == [("i0", "ready"), ("i1", "running")]
    assert pg.changes(RUN, cursor) == (cursor, [])  # nothing missed, nothing left


def test_a_cursor_stays_put_while_a_commit_in_flight_takes_too_long(
    pg: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(changes_module, "SETTLE", 0.3)
    epochs = submitted(pg, 2)
    move(pg, epochs, 1, "pending", "ready")
    since, _ = pg.changes(RUN, 0)
    slow = in_flight(pg, 0)
    move(pg, epochs, 1, "ready", "running")
    started = time.monotonic()
    cursor, changed = pg.changes(RUN, since)
    assert time.monotonic() - started < 3
    assert cursor == since and [(i.id, i.state) for i in changed] == [("i1", "running")]
    slow.commit()
    slow.close()
    cursor, changed = pg.changes(RUN, cursor)  # the same changes again, and the one that landed
    assert cursor > since and [(i.id, i.state) for i in changed] == [("i0", "ready"), ("i1", "running")]


# -- the migration ------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    server = request.getfixturevalue("postgres")
    return str(server.create_database(f"t_{uuid.uuid4().hex[:12]}"))


def test_migrating_builds_the_declared_schema_with_the_index_of_changes(empty: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = SqlStore(empty, migrate=False, check=False)
    try:
        assert store.upgrade() == SCHEMA_REVISION
        with store.engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            indexes = {ix["name"]: ix["column_names"] for ix in sa.inspect(conn).get_indexes("transitions")}
        assert indexes["ix_transitions_run"] == ["run_id", "id"]
    finally:
        store.close()
