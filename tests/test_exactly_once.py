"""Exactly once into a warehouse: the Luigi port of examples/luigi_port, SIGKILLed again and
again (most kills while an ingest or aggregate holds its rows in an open transaction), then run
to the end, on SQLite and on PostgreSQL, sharing its totals to a local S3 server: every day's
partition holds the source's rows exactly once, one marker each, the aggregates are the sums of
the rows, and every object in the bucket is whole (no partial one, no unfinished upload). Also
``--force`` (rows replaced, not added) and two stores racing on one warehouse (the loser's rows
roll back)."""

from __future__ import annotations

import collections
import importlib.util
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from conveyor import TableTarget

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "luigi_port"

_spec = importlib.util.spec_from_file_location("luigi_port_source", EXAMPLE / "source.py")
assert _spec is not None and _spec.loader is not None
source = importlib.util.module_from_spec(_spec)  # the example's source: the rows each day must end with
_spec.loader.exec_module(source)

PIPELINE = f"{EXAMPLE / 'pipeline.py'}:sales"
START = date(2026, 1, 1)
SEED = 20260101
#: Seconds ingest and aggregate hold their transaction open after the insert, under the kills.
PAUSE = 0.3


# -- running and killing ------------------------------------------------------------------------
def start(project: Project, db: str, days: int, *args: str, env: dict[str, str] | None = None) -> Any:
    """``conveyor run`` of the port, in a session (process group) of its own."""
    argv = [sys.executable, "-m", "conveyor", "run", PIPELINE, "-p", f"days={days}", "-p", f"db={db}"]
    return subprocess.Popen(
        [*argv, *args],
        cwd=project.root,
        env={**project.env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out[ppid].append(int(entry))
    return out


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return "X"


def kill_all(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``conveyor run`` and every process under it, as a machine that loses power would.

    Its group is not enough: each worker puts itself in a process group of its own (so that a
    terminal's Ctrl-C reaches only the driver). The driver is stopped first, so that it cannot
    start a worker while its tree is read."""
    os.killpg(proc.pid, signal.SIGSTOP)
    deadline = time.time() + 5
    while _state(proc.pid) not in ("T", "t", "Z", "X") and time.time() < deadline:
        time.sleep(0.001)
    children = _children()
    tree, todo = [], [proc.pid]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    for pid in reversed(tree):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.time() + 10  # dead, not necessarily reaped (init reaps the orphans)
    while any(_state(pid) not in ("Z", "X") for pid in tree) and time.time() < deadline:
        time.sleep(0.005)


class Progress:
    """What the port's ingest and aggregate say in LUIGI_PORT_PROGRESS: "inserted STEP DAY PID"
    once their rows are in the open transaction, "returning STEP DAY PID" when they return (then
    the runner commits the rows with the marker)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen = 0

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines() if self.path.exists() else []

    def inserts(self) -> int:
        return sum(line.startswith("inserted ") for line in self.lines())

    def open_since(self, mark: int) -> set[tuple[str, str]]:
        """The (step, day) transactions open when the processes died: inserted, not returned."""
        lines = self.lines()[mark:]
        inserted = {tuple(line.split()[1:]) for line in lines if line.startswith("inserted ")}
        returned = {tuple(line.split()[1:]) for line in lines if line.startswith("returning ")}
        return {(step, day) for step, day, _ in inserted - returned}


# -- what the warehouse holds ---------------------------------------------------------------------
def days(n: int) -> list[date]:
    return [START + timedelta(days=k) for k in range(n)]


def part(url: str, table: str, day: date | str) -> TableTarget:
    return TableTarget(url, table, partition={"day": str(day)})


def check_warehouse(url: str, n: int) -> None:
    """Each day's rows exactly once (the multiset of the source's), one marker per partition
    naming its row count, the aggregates the sums of the rows, nothing outside the days."""
    for day in days(n):
        sales = part(url, "sales", day)
        got = collections.Counter(
            (r["order_id"], r["sku"], r["quantity"], r["price_cents"])
            for r in sales.rows("order_id", "sku", "quantity", "price_cents")
        )
        want = collections.Counter(tuple(r.values()) for r in source.sales(day))
        assert got == want, f"{day}: duplicated {got - want}, lost {want - got}"
        totals: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        for _, sku, quantity, price in got.elements():
            t = totals[sku]
            t[0], t[1], t[2] = t[0] + 1, t[1] + quantity, t[2] + quantity * price
        agg = part(url, "daily_totals", day).rows("sku", "orders", "units", "revenue_cents")
        assert {r["sku"]: [r["orders"], r["units"], r["revenue_cents"]] for r in agg} == totals, day
        assert len(agg) == len(totals), f"{day}: duplicated aggregate rows"
        for target, rows in ((sales, sum(want.values())), (part(url, "daily_totals", day), len(agg))):
            marker = target.marker()
            assert marker is not None and marker["row_count"] == rows, (target, marker)
    everything = TableTarget(url, "conveyor_targets")
    with everything.connect() as conn:
        keys = [r[0] for r in conn.execute(everything.select("key"))]
    assert len(keys) == len(set(keys)) == 2 * n, "one marker per partition"
    for table in ("sales", "daily_totals"):
        whole = TableTarget(url, table)
        with whole.connect() as conn:
            seen = {str(r[0]) for r in conn.execute(whole.select("day"))}
        assert seen == {str(d) for d in days(n)}, f"{table} has rows of other days"


def check_shared(url: str, bucket: str, n: int) -> None:
    """Every object the port shared is whole: exactly one per day, each the day's totals as the
    warehouse holds them; nothing else under the bucket (no temporary or partial object) and no
    unfinished multipart upload."""
    import csv
    import io

    from s3 import keys, store

    assert keys(bucket) == sorted(f"shared/totals-{day}.csv" for day in days(n))
    for day in days(n):
        text = store().cat_file(f"{bucket}/shared/totals-{day}.csv").decode()
        rows = list(csv.DictReader(io.StringIO(text)))
        agg = part(url, "daily_totals", day).rows("sku", "orders", "units", "revenue_cents")
        assert rows == sorted(({k: str(v) for k, v in r.items()} for r in agg), key=lambda r: r["sku"]), day
    uploads = store().call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])
    assert uploads == [], uploads


def check_dumps(project: Project, n: int) -> None:
    """No partial file: every dump in place is the whole day (a killed dump leaves at most a
    hidden temporary file, never a partial CSV under the final name)."""
    import csv

    for day in days(n):
        path = project.root / "dumps" / f"sales-{day}.csv"
        with path.open(newline="") as f:
            rows = [
                {**r, "quantity": int(r["quantity"]), "price_cents": int(r["price_cents"])}
                for r in csv.DictReader(f)
            ]
        assert rows == source.sales(day), f"{path.name} is partial"


# -- the kill test --------------------------------------------------------------------------------
WAREHOUSES = ["sqlite", "postgresql"]
KILLS = int(os.environ.get("CONVEYOR_TEST_KILLS") or 50)  # per database; more for a longer torture
DAYS = 40  # 80 table partitions: more than 50 kills let commit, so the kills keep finding work


@dataclass
class Warehouse:
    kind: str
    url: str  # what the test reads
    given: str  # what the pipeline is given: on PostgreSQL "$WAREHOUSE_URL", read at run time
    env: dict[str, str]


def open_warehouse(kind: str, root: Path, request: pytest.FixtureRequest) -> Warehouse:
    if kind == "sqlite":
        url = f"sqlite:///{root / 'warehouse.db'}"
        return Warehouse(kind, url, url, {})
    url = request.getfixturevalue("postgres").create_database(f"wh_{uuid.uuid4().hex[:10]}")
    return Warehouse(kind, url, "$WAREHOUSE_URL", {"WAREHOUSE_URL": url})


@pytest.fixture(params=WAREHOUSES)
def warehouse_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def warehouse(request: pytest.FixtureRequest, project: Project, warehouse_kind: str) -> Warehouse:
    return open_warehouse(warehouse_kind, project.root, request)


@dataclass
class Torture:
    kind: str
    kills: int = 0
    landed: int = 0  # kills that found at least one transaction holding inserted rows
    transactions: int = 0  # transactions killed after their insert
    runs: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        return (
            f"{self.kind}: {self.kills} kills, {self.landed} inside an open transaction "
            f"({self.transactions} transactions killed after their insert), {self.runs} runs, "
            f"{self.seconds:.0f}s"
        )


def torture(project: Project, warehouse: Warehouse, seed: int, to: str) -> Torture:
    """Start the port, SIGKILL it and all its workers, KILLS times (four in five aimed inside
    the pause after an insert, the others anywhere), then run it to the end. It shares its
    totals to ``to``."""
    figures = Torture(warehouse.kind)
    progress = Progress(project.root / "progress.log")
    env = {**warehouse.env, "LUIGI_PORT_PAUSE": str(PAUSE), "LUIGI_PORT_PROGRESS": str(progress.path)}
    rng = random.Random(seed)
    began = time.time()
    while figures.kills < KILLS:
        mark, inserts = len(progress.lines()), progress.inserts()
        proc = start(project, warehouse.given, DAYS, "--workers", "4", "-p", f"to={to}", env=env)
        figures.runs += 1
        deadline = time.time() + 60
        if rng.random() < 0.8:  # aimed: after an insert, somewhere in the pause that follows it
            while progress.inserts() == inserts and proc.poll() is None and time.time() < deadline:
                time.sleep(0.004)
            time.sleep(rng.uniform(0, PAUSE))
        else:  # anywhere: starting, adopting the killed attempts, dumping, committing
            time.sleep(rng.uniform(0.2, 4.5))
        if proc.poll() is not None:
            out = proc.communicate()[0]
            assert proc.returncode == 0, out
            break  # the pipeline finished between two kills
        kill_all(proc)
        figures.kills += 1
        caught = progress.open_since(mark)
        figures.landed += bool(caught)
        figures.transactions += len(caught)
        for step, day in caught:  # the killed transaction left nothing behind
            target = part(warehouse.url, "sales" if step == "ingest" else "daily_totals", day)
            assert target.marker() is None and target.count() == 0, (step, day, target.rows())
    quick = {**env, "LUIGI_PORT_PAUSE": "0"}
    final = start(project, warehouse.given, DAYS, "--workers", "4", "-p", f"to={to}", env=quick)
    out = final.communicate(timeout=240)[0]
    figures.runs += 1
    assert final.returncode == 0, out
    figures.seconds = time.time() - began
    return figures


def test_sigkill_inside_the_transaction_never_duplicates_or_loses_a_row(
    tmp_path: Path, request: pytest.FixtureRequest, s3: str
) -> None:
    """KILLS kills on each database, the two databases side by side (a resumed run first waits
    3 s for the killed attempts to beat, so one database alone takes about 4 s a kill); each
    shares its totals to a bucket of its own on a local S3 server."""
    from s3 import new_bucket

    jobs = []
    for kind in WAREHOUSES:
        (tmp_path / kind).mkdir()
        project = Project(tmp_path / kind)
        jobs.append((project, open_warehouse(kind, project.root, request), new_bucket()))
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [
            pool.submit(torture, p, w, SEED + k, f"s3://{bucket}/shared")
            for k, (p, w, bucket) in enumerate(jobs)
        ]
        done = [f.result() for f in futures]
    print("", *done, sep="\n")
    for (project, warehouse, bucket), figures in zip(jobs, done, strict=True):
        assert figures.kills == KILLS, f"{figures}: the pipeline finished early; give it more days"
        assert figures.landed >= KILLS // 2, f"{figures}: too few kills landed inside a transaction"
        check_warehouse(warehouse.url, DAYS)
        check_dumps(project, DAYS)
        check_shared(warehouse.url, bucket, DAYS)


# -- --force, and two stores racing ---------------------------------------------------------------
def run_id(out: str) -> str:
    found = re.search(r"run (\S+) of sales", out)
    assert found, out
    return found.group(1)


def test_force_replaces_the_partitions_rows_and_rewrites_the_marker(
    project: Project, warehouse: Warehouse
) -> None:
    first = start(project, warehouse.given, 2, env=warehouse.env)
    out = first.communicate(timeout=120)[0]
    assert first.returncode == 0, out
    before = run_id(out)
    again = start(project, warehouse.given, 2, "--force", env=warehouse.env)
    out = again.communicate(timeout=120)[0]
    assert again.returncode == 0, out
    assert run_id(out) != before
    check_warehouse(warehouse.url, 2)  # rows replaced, not added
    for day in days(2):
        for table in ("sales", "daily_totals"):
            marker = part(warehouse.url, table, day).marker()
            assert marker is not None and (marker["run_id"], marker["attempt"]) == (run_id(out), 1), marker


def test_two_stores_racing_on_one_partition_write_it_once(
    tmp_path: Path, request: pytest.FixtureRequest, warehouse_kind: str
) -> None:
    """Two projects (two stores: neither knows the other runs the same task instance) ingest the
    same day into one warehouse at once: one commits, the other's rows roll back and its
    attempt says who did it."""
    projects = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        projects.append(Project(tmp_path / name))
    warehouse = open_warehouse(warehouse_kind, tmp_path, request)
    env = {**warehouse.env, "LUIGI_PORT_PAUSE": "1.5"}  # both inside ingest before either commits
    procs = [start(p, warehouse.given, 1, env=env) for p in projects]
    outs = [proc.communicate(timeout=120)[0] for proc in procs]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out
    check_warehouse(warehouse.url, 1)
    marker = part(warehouse.url, "sales", START).marker()
    assert marker is not None
    runs = [run_id(out) for out in outs]
    loser = 1 - runs.index(marker["run_id"])
    logs = projects[loser].cli("logs", runs[loser], "ingest", check=True).stdout
    assert f"already done by attempt {marker['attempt']} of run {marker['run_id']}" in logs, logs
    assert "rolled back" in logs
    winner_logs = projects[1 - loser].cli("logs", runs[1 - loser], "ingest", check=True).stdout
    assert "already done" not in winner_logs
