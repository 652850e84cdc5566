"""Table targets on real databases (a SQLite file and a throwaway PostgreSQL server): a task's
rows and its marker commit together, after it returned, or not at all; ``--force`` replaces the
partition; racing attempts cannot both commit; completeness of a year of partitions is one
query; what cannot work is one line."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import Project
from conveyor import TableTarget
from conveyor.errors import DefinitionError, TargetError
from conveyor.targets import Writer, done_among
from conveyor.targets.tables import MARKERS, AlreadyDone

DAY = date(2026, 1, 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL of each kind, empty."""
    if request.param == "sqlite":
        (tmp_path / "warehouse").mkdir()
        yield f"sqlite:///{tmp_path / 'warehouse' / 'wh.db'}"
    else:
        server = request.getfixturevalue("postgres")
        yield server.create_database(f"wh_{uuid.uuid4().hex[:10]}")


def _make_sales(conn: sa.Connection) -> None:
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS sales (day TEXT NOT NULL, sku TEXT NOT NULL, qty INTEGER)"
    )


def _rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def _write(target: TableTarget, rows: list[dict[str, Any]], writer: Writer, *, replace: bool = False) -> Any:
    staged = target.stage(replace=replace)
    with staged.transaction() as conn:
        _make_sales(conn)
        staged.insert(conn, rows)
    return target.finish(staged, writer)


def test_rows_and_marker_commit_together_only_when_the_attempt_finishes(warehouse: str) -> None:
    target = TableTarget(warehouse, "sales", partition={"day": DAY})
    staged = target.stage()
    with staged.transaction() as conn:
        _make_sales(conn)
        staged.insert(conn, [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}])
    # the task returned, the runner has not committed yet: nothing is visible, nothing is done
    assert not target.exists()
    print_ = target.finish(staged, Writer("run-1", "inst", 1))
    assert target.exists()
    assert print_["rows"] == 2 and print_["partition"] == {"day": "2026-01-01"}
    assert sorted(_rows(warehouse, "SELECT day, sku, qty FROM sales")) == [
        ("2026-01-01", "a", 1),
        ("2026-01-01", "b", 2),
    ]
    marker = target.marker()
    assert marker is not None
    assert (marker["run_id"], marker["instance_id"], marker["attempt"], marker["row_count"]) == (
        "run-1",
        "inst",
        1,
        2,
    )


def test_an_attempt_that_fails_or_is_abandoned_leaves_nothing(warehouse: str) -> None:
    target = TableTarget(warehouse, "sales", partition={"day": DAY})
    engine = sa.create_engine(warehouse)
    with engine.begin() as conn:
        _make_sales(conn)
    engine.dispose()
    staged = target.stage()
    with pytest.raises(RuntimeError), staged.transaction() as conn:
        _make_sales(conn)
        staged.insert(conn, [{"sku": "a", "qty": 1}])
        raise RuntimeError("the task broke mid-write")
    staged = target.stage()
    with staged.transaction() as conn:
        _make_sales(conn)
        staged.insert(conn, [{"sku": "a", "qty": 1}])
    target.abandon(staged)  # the task raised after its transaction: the runner abandons it
    assert not target.exists()
    assert _rows(warehouse, "SELECT COUNT(*) FROM sales") == [(0,)]


def test_replace_clears_the_partition_and_its_marker_in_the_same_transaction(warehouse: str) -> None:
    target = TableTarget(warehouse, "sales", partition={"day": DAY})
    other = TableTarget(warehouse, "sales", partition={"day": DAY + timedelta(days=1)})
    _write(target, [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}], Writer("run-1", "i", 1))
    _write(other, [{"sku": "z", "qty": 9}], Writer("run-1", "j", 1))
    _write(target, [{"sku": "c", "qty": 3}], Writer("run-2", "i", 1), replace=True)
    assert sorted(_rows(warehouse, "SELECT day, sku FROM sales")) == [
        ("2026-01-01", "c"),
        ("2026-01-02", "z"),  # another partition is left alone
    ]
    marker = target.marker()
    assert marker is not None and marker["run_id"] == "run-2" and marker["row_count"] == 1


def test_two_attempts_racing_cannot_both_commit(warehouse: str) -> None:
    """At-least-once: two attempts of one instance write at once; one commits, the other's
    rows roll back and it reports who did it."""
    target = TableTarget(warehouse, "sales", partition={"day": DAY})
    _write(TableTarget(warehouse, "sales", partition={"day": date(2000, 1, 1)}), [], Writer("r0", "x", 1))
    barrier = threading.Barrier(2, timeout=30)
    outcomes: dict[int, Any] = {}

    def attempt(n: int) -> None:
        staged = target.stage()
        try:
            barrier.wait()
            with staged.transaction() as conn:
                staged.insert(conn, [{"sku": f"from-{n}", "qty": n}])
                time.sleep(0.3)  # both are inside their transaction now (or queued for SQLite's lock)
            outcomes[n] = target.finish(staged, Writer(f"run-{n}", "i", n))
        except AlreadyDone as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=attempt, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done = [n for n, o in outcomes.items() if isinstance(o, dict)]
    lost = [o for o in outcomes.values() if isinstance(o, AlreadyDone)]
    assert len(done) == 1 and len(lost) == 1, outcomes
    assert f"already done by attempt {done[0]} of run run-{done[0]}" in str(lost[0])
    assert _rows(warehouse, f"SELECT sku FROM sales WHERE day = '{DAY}'") == [(f"from-{done[0]}",)]


def test_a_year_of_partitions_is_decided_in_one_query(warehouse: str) -> None:
    days = [DAY + timedelta(days=n) for n in range(365)]
    targets = [TableTarget(warehouse, "sales", partition={"day": d}) for d in days]
    for d, t in zip(days, targets, strict=True):
        if d.day != 13:  # the 13th of every month is missing
            staged = t.stage()
            with staged.transaction() as conn:
                _make_sales(conn)
            t.finish(staged, Writer("r", "i", 1))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = targets[0].engine
    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        done = done_among(targets)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert len(done) == 365 - 12
    assert {t.partition["day"].day for t in targets if t not in done} == {13}
    assert len([s for s in statements if MARKERS in s]) == 1, statements


def test_nothing_is_done_before_the_database_or_the_marker_table_exists(tmp_path: Path) -> None:
    db = tmp_path / "nowhere" / "wh.db"
    target = TableTarget(f"sqlite:///{db}", "sales", partition={"day": DAY})
    assert not target.exists() and done_among([target]) == set()
    assert not db.exists()  # asking created nothing


def test_a_url_from_the_environment_keeps_credentials_out_of_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WAREHOUSE_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    target = TableTarget("$WAREHOUSE_URL", "sales", partition={"day": DAY})
    _write(target, [{"sku": "a", "qty": 1}], Writer("r", "i", 1))
    assert target.exists() and target.describe() == "sales[day=2026-01-01] in $WAREHOUSE_URL"
    monkeypatch.delenv("WAREHOUSE_URL")
    with pytest.raises(TargetError, match=r"the environment variable WAREHOUSE_URL .* is not set"):
        target.exists()


def test_passwords_are_never_shown() -> None:
    target = TableTarget("postgresql+psycopg://ann:s3cret@127.0.0.1:1/wh", "sales", partition={"day": DAY})
    assert "s3cret" not in target.describe() and "s3cret" not in repr(target)
    assert "ann:***@127.0.0.1" in target.describe()


def test_definitions_that_cannot_work_are_refused_at_once() -> None:
    from conveyor import shell, task

    with pytest.raises(DefinitionError, match="'sales; drop' is not a table name"):
        TableTarget("sqlite:///x.db", "sales; drop")
    with pytest.raises(DefinitionError, match="partition column 'da y' is not a column name"):
        TableTarget("sqlite:///x.db", "sales", partition={"da y": 1})
    with pytest.raises(DefinitionError, match=r"uses \{when\} which is not a parameter"):

        @task(output=TableTarget("sqlite:///x.db", "sales", partition={"day": "{when}"}))
        def ingest(day: date) -> None: ...

    with pytest.raises(DefinitionError, match="only a @task function can write one"):
        shell("echo {day}", name="load", output=TableTarget("sqlite:///x.db", "t", partition={"d": "{day}"}))
    with pytest.raises(TargetError, match="in-memory SQLite database lives in one process"):
        TableTarget("sqlite://", "t").check()
    with pytest.raises(TargetError, match="driver for mysql\\+pymysql is not installed; install the Python"):
        TableTarget("mysql+pymysql://u:p@127.0.0.1/db", "t").check()


# -- through the real command -----------------------------------------------------------------
PIPELINE = """
    import os, time
    from datetime import date, timedelta
    from conveyor import TableTarget, output, pipeline, task

    URL = os.environ["WAREHOUSE"]

    SALES = "CREATE TABLE IF NOT EXISTS sales (day DATE, sku TEXT, qty INTEGER)"

    @task(output=TableTarget(URL, "sales", partition={{"day": "{{day}}"}}, create=SALES))
    def ingest(day: date, n: int = 3) -> int:
        rows = [{{"sku": f"s{{i}}", "qty": i}} for i in range(n)]
        with output().transaction() as conn:
            output().insert(conn, rows)
        return len(rows)

    TOTALS = "CREATE TABLE IF NOT EXISTS totals (day TEXT, qty INTEGER)"

    @task(output=TableTarget(URL, "totals", partition={{"day": "{{day}}"}}, create=TOTALS))
    def total(day: date, sales: TableTarget) -> None:
        with sales.connect() as c:
            qty = sum(c.execute(sales.select("qty")).scalars())
        with output().transaction() as conn:
            output().insert(conn, [{{"qty": qty}}])

    @task(output=TableTarget(URL, "narrow", partition={{"day": "{{day}}"}}))
    def misfit(day: date) -> None:
        with output().transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS narrow (day TEXT)")
            output().insert(conn, [{{"nope": 1}}])

    @pipeline
    def daily(days: int = 3, n: int = 3) -> None:
        for k in range(days):
            d = date(2026, 1, 1) + timedelta(days=k)
            total(day=d, sales=ingest(day=d, n=n))

    @pipeline
    def broken() -> None:
        misfit(day=date(2026, 1, 1))
"""


def _project(project: Project, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    project.write("p.py", PIPELINE.format())
    monkeypatch.setenv("WAREHOUSE", url)


def test_a_pipeline_writes_each_partition_once_and_force_replaces_it(
    project: Project, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, warehouse, monkeypatch)
    project.cli("run", "p.py:daily", check=True)
    again = project.cli("run", "p.py:daily", check=True)
    assert "Every task was skipped" in again.stdout
    project.cli("run", "p.py:daily", "-p", "n=2", check=True)  # other parameters: another run...
    # ... but the same partitions: done already, skipped, nothing added
    assert _rows(warehouse, "SELECT COUNT(*) FROM sales") == [(9,)]
    forced = project.cli("run", "p.py:daily", "-p", "n=2", "--force", check=True)
    assert "6 succeeded" in forced.stdout
    assert sorted(_rows(warehouse, "SELECT CAST(day AS TEXT), COUNT(*) FROM sales GROUP BY day")) == [
        ("2026-01-01", 2),
        ("2026-01-02", 2),
        ("2026-01-03", 2),
    ]
    assert _rows(warehouse, "SELECT day, qty FROM totals ORDER BY day") == [
        ("2026-01-01", 1),
        ("2026-01-02", 1),
        ("2026-01-03", 1),
    ]
    assert _rows(warehouse, f"SELECT COUNT(*) FROM {MARKERS}") == [(6,)]


def test_the_run_record_keeps_each_partition_s_row_count(
    project: Project, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, warehouse, monkeypatch)
    project.cli("run", "p.py:daily", "-p", "days=1", "-p", "n=4", check=True)
    from conveyor.store import open_store
    from conveyor.views import TaskView

    store = open_store(project.db)
    run = store.list_runs(limit=1)[0]
    inst = next(i for i in store.instances(run.id) if i.task == "ingest")
    ingest = TaskView.of(inst, store.attempts(run.id, inst.id))
    assert ingest.outputs is not None
    (held,) = ingest.outputs
    assert (held["kind"], held["table"], held["partition"], held["rows"]) == (
        "table",
        "sales",
        {"day": "2026-01-01"},
        4,
    )
    assert held["written_by"] == {"run": run.id, "attempt": 1}


def test_rows_that_do_not_fit_fail_the_task_with_one_line_and_exit_2(
    project: Project, warehouse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _project(project, warehouse, monkeypatch)
    proc = project.cli("run", "p.py:broken")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "TargetError: writing table target narrow[day=2026-01-01]" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert _rows(warehouse, f"SELECT COUNT(*) FROM {MARKERS}") == [(0,)]


def test_an_unreachable_database_is_one_line_naming_it_without_its_password(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _project(project, f"postgresql+psycopg://ann:s3cret@127.0.0.1:{port}/wh", monkeypatch)
    proc = project.cli("run", "p.py:daily", timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    shown = f"postgresql+psycopg://ann:***@127.0.0.1:{port}/wh"
    assert f"cannot reach the database of table target sales[day=2026-01-01] in {shown}" in out
    assert "s3cret" not in out and "Traceback" not in out


def test_a_missing_database_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if conveyor[postgres] were not installed
    target = TableTarget("postgresql+psycopg://ann:s3cret@127.0.0.1:1/wh", "sales", partition={"day": DAY})
    with pytest.raises(TargetError) as err:
        target.check()
    assert str(err.value) == (
        "table target sales: the driver for postgresql+psycopg is not installed; "
        "pip install 'conveyor[postgres]'"
    )


def test_a_date_partition_of_a_date_column(warehouse: str) -> None:
    day = TableTarget(warehouse, "sales", partition={"day": date(2026, 1, 2)})
    with day.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE sales (day DATE NOT NULL, amount INTEGER NOT NULL)")
    for d in (date(2026, 1, 1), date(2026, 1, 2)):
        target = TableTarget(warehouse, "sales", partition={"day": d})
        with target.transaction() as conn:
            target.insert(conn, [{"amount": 1}, {"amount": 2}])
    assert day.count() == 2 and sorted(r["amount"] for r in day.rows("amount")) == [1, 2]
    with day.connect() as conn:
        assert sorted(conn.execute(day.select("amount")).scalars()) == [1, 2]
    as_text = TableTarget(warehouse, "sales", partition={"day": "2026-01-02"})
    assert as_text.exists() and as_text.count() == 2
    with day.transaction(replace=True) as conn:
        day.insert(conn, [{"amount": 5}])
    assert [r["amount"] for r in day.rows("amount")] == [5]
    assert TableTarget(warehouse, "sales", partition={"day": date(2026, 1, 1)}).count() == 2


def test_a_task_called_as_a_plain_function_writes_its_partition(warehouse: str) -> None:
    """Its ``output()`` is the target itself: ``output().insert`` works there as under a run."""
    from conveyor import output, task

    @task(output=TableTarget(warehouse, "sales", partition={"day": "{day}"}))
    def ingest(day: date) -> None:
        with output().transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS sales (day DATE NOT NULL, amount INTEGER)")
            output().insert(conn, [{"amount": 7}])

    ingest(date(2026, 1, 3))
    done = TableTarget(warehouse, "sales", partition={"day": date(2026, 1, 3)})
    assert done.rows("amount") == [{"amount": 7}] and done.marker() is not None
