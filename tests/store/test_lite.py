"""The embedded run's store without SQLAlchemy: the same SQL and schema as ``SqlStore``'s.

(The store contract itself runs on it too: the ``lite`` case of the ``store`` fixture.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite
from test_sql import instances, make_run

from conveyor.errors import SchemaError
from conveyor.store import Batch, lite, open_embedded
from conveyor.store import sqlite_ddl as ddl
from conveyor.store import statements as st
from conveyor.store.lite import SQL, LiteStore, generated_is_current, update
from conveyor.store.records import AttemptRecord, TransitionRecord
from conveyor.store.schema import SCHEMA_REVISION
from conveyor.store.sql import SqlStore


def test_the_generated_schema_is_current() -> None:
    """If this fails, the schema changed: run ``python -m conveyor.store.statements``."""
    assert ddl.REVISION == SCHEMA_REVISION
    assert generated_is_current()  # else conveyor run uses SqlStore, and imports SQLAlchemy
    assert list(ddl.DDL) == st.schema_ddl(sqlite.dialect())
    assert ddl.RUN_COLUMNS == st.RUN_COLUMNS
    assert ddl.INSTANCE_COLUMNS == st.INSTANCE_COLUMNS
    assert ddl.ATTEMPT_COLUMNS == st.ATTEMPT_COLUMNS
    assert ddl.TRANSITION_COLUMNS == st.TRANSITION_COLUMNS


def _exercised(url: str) -> SqlStore:
    """A ``SqlStore`` that has compiled every statement of an embedded run."""
    store = SqlStore(url)
    run = make_run()
    store.create_run(run, instances(run.id))
    store.latest_run(run.key)
    store.instances(run.id)
    epoch = store.acquire(run.id, "host:1", ttl=30)
    store.add_instances(run.id, [])
    batch = Batch(
        instances=[{"id": "a1", "state": "running", "attempts": 1}],
        attempts_started=[AttemptRecord(run.id, "a1", 1, "running", 1.0)],
        attempts_ended=[
            {"instance_id": "a1", "number": 1, "state": "succeeded", "ended_at": 2.0, "error": None}
        ],
        transitions=[TransitionRecord("a1", "pending", "ready", 1.0, "upstream done", 0)],
        run={"state": "running", "started_at": 1.0},
    )
    store.commit(run.id, epoch, batch, lease_until=31.0)
    store.instances(run.id)
    store.release(run.id, epoch)
    return store


def test_its_statements_are_the_ones_sqlalchemy_compiles(tmp_path: Path) -> None:
    store = _exercised(f"sqlite:///{tmp_path / 'a.db'}")
    compiled = {k: s.text for k, s in store._sql.items()}
    store.close()
    assert {k: compiled.get(k) for k in SQL} == SQL
    # the group commit's updates: the same columns set and keys matched (in the batch's order)
    for key, text in compiled.items():
        if isinstance(key, tuple):
            table, cols, where = (
                ("runs", (*key[1], "lease_expires"), ("id", "epoch"))
                if key[0] == "fence"
                else ("task_instances", key[1:], ("run_id", "id"))
                if key[0] == "id"
                else ("attempts", key[2:], ("run_id", "instance_id", "number"))
            )
            mine = update(table, cols, where)
            assert sorted(mine.split(" WHERE ")[0].split(", ")) == sorted(
                text.split(" WHERE ")[0].split(", ")
            )
            assert mine.split(" WHERE ")[1] == text.split(" WHERE ")[1]


def test_a_new_database_has_the_same_schema_as_sqlstore_creates(tmp_path: Path) -> None:
    lite = open_embedded(f"sqlite:///{tmp_path / 'lite.db'}")
    assert isinstance(lite, LiteStore)
    lite.close()
    SqlStore(f"sqlite:///{tmp_path / 'full.db'}").close()

    def schema(path: Path) -> list[tuple[str, str]]:
        with sqlite3.connect(path) as conn:
            return sorted(conn.execute("SELECT name, sql FROM sqlite_master").fetchall(), key=str)

    assert schema(tmp_path / "lite.db") == schema(tmp_path / "full.db")
    assert SqlStore(f"sqlite:///{tmp_path / 'lite.db'}").revision() == SCHEMA_REVISION


def test_another_revision_is_left_to_sqlstore_and_its_messages(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    SqlStore(url).close()
    with sqlite3.connect(tmp_path / "old.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    with pytest.raises(SchemaError, match="conveyor db upgrade"):
        open_embedded(url)


def test_what_it_does_not_do_itself_a_sqlstore_does(tmp_path: Path) -> None:
    store = open_embedded(f"sqlite:///{tmp_path / 'a.db'}")
    run = make_run()
    store.create_run(run, instances(run.id))
    assert [r.id for r in store.list_runs()] == [run.id]  # through SqlStore, on the same file
    assert store.get_run(run.id[:10]).counts == {"pending": 2}
    store.close()


def test_a_schema_change_not_yet_regenerated_is_left_to_sqlstore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / f"{ddl.REVISION}_before.py").touch()
    (versions / "9999_newer.py").touch()  # a migration sqlite_ddl does not know yet
    monkeypatch.setattr(lite, "_VERSIONS", versions)
    store = open_embedded(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(store, SqlStore)
    store.close()
