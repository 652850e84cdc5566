"""Conveyor against Luigi, Dask, Prefect and a raw process pool, in one run.

    make bench                                   # installs what is missing, then runs this
    .venv/bin/python bench/harness.py [--only a,c] [--engines conveyor,pool] [--reps N] [--quick]

Scenarios (no-op tasks unless said; the letters are the issue's):
  a  1,000 independent tasks plus one join           tasks/s
  b  a 200-step chain                                ms per step
  c  10,000 and 100,000 tasks in one wide graph       tasks/s and the scheduler's peak RSS
  d  cold start: the whole process for a one-task pipeline      seconds
  e  idempotent re-run: 1,000 tasks whose targets all exist      tasks decided per second
  f  Conveyor on PostgreSQL, with one and two schedulers (Conveyor only; bench/peers/run_ha.py):
     f1  2,000 no-ops in 8 components: PostgreSQL, one scheduler, against embedded SQLite   tasks/s
     f2  8 partitions of 64 tasks sleeping (or busy) 20 ms: two schedulers against one     tasks/s
     f3  takeover: from a SIGKILL of the owner to the next task started by a standby       seconds
  g  the demo pipeline over 30 days (Conveyor only)  seconds
  h  bulk completeness: which of 365 (and 3,650) written daily partitions of one SQLite table are
     done: Conveyor's TableTargets and done_among (and each target's exists()), Luigi's
     SQLAlchemyTarget decided by RangeDaily      ms to decide, and the SQL statements it took

Every measurement is a fresh subprocess in a fresh temporary directory (bench/peers/run_*.py;
Conveyor and the process pool with this Python, the peers with .bench-venv's, h's Luigi with
.bench-luigi-venv's: its SQLAlchemy contrib needs SQLAlchemy 1.4, Prefect 2), which reports one
JSON line. Scenario f needs PostgreSQL (Debian's ``postgresql`` package, and psycopg): the harness
starts a throwaway server with its durable defaults (bench/pgserver.py) for f only, and reports
f as skipped without one. Repetitions are interleaved: for each scenario, for each repetition,
every engine once, the order rotating. A run over the time limit is killed and reported as
timed out; a run slower than --slow seconds (h10y: 90), or timed out, is not repeated. The report gives
medians, min-max and each engine's median as a ratio to Conveyor's (in f, to the scenario's
base), checks the targets, and writes bench/results/bench-TIMESTAMP.json, latest.json,
latest.md (the tables) and bench.png (scenarios a-e and g). ``BENCH_QUICK=1`` (or
--quick) is a smoke run; ``--publish bench/results/latest.json`` puts a run into
docs/performance.md and docs/images/bench.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
RESULTS = HERE / "results"
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
MARK = "BENCH-RESULT "
PEER_PACKAGES = ("luigi", "dask", "distributed", "prefect", "fastapi")


@dataclass(frozen=True)
class Engine:
    key: str
    label: str
    script: str
    variant: str = ""
    peer: bool = True  # runs with .bench-venv's Python
    scenarios: str = "abcde"  # the scenario letters it takes part in (f: see Scenario.engines)
    max_reps: int = 1000
    python: str = ""  # another venv's Python, relative to the repository (over `peer`)


ENGINES = (
    Engine("conveyor", "Conveyor", "run_conveyor.py", peer=False, scenarios="abcdegh"),
    # h: each target's exists() in turn, to show what done_among's one query buys
    Engine("conveyor-each", "Conveyor, exists() each", "run_conveyor.py", "each", peer=False, scenarios="h"),
    # d: `conveyor run` on a store that exists, and resuming a failed run (bench/coldstart.py)
    Engine("conveyor-again", "Conveyor, existing store", "", peer=False, scenarios="d"),
    Engine("conveyor-resumed", "Conveyor, resumed run", "", peer=False, scenarios="d"),
    Engine("pool", "process pool", "run_pool.py", peer=False, scenarios="abcd"),
    Engine("dask-threads", "Dask threaded", "run_dask.py", "threads", scenarios="abcd"),
    Engine("dask-cluster", "Dask LocalCluster", "run_dask.py", "cluster", scenarios="abcd"),
    Engine("luigi-1", "Luigi, 1 worker", "run_luigi.py", "1", scenarios="abcde"),
    Engine("luigi-2", "Luigi, 2 workers", "run_luigi.py", "2", scenarios="abcd"),
    Engine(
        "luigi-range",
        "Luigi, RangeDaily",
        "run_luigi.py",
        "range",
        peer=False,
        scenarios="h",
        python=".bench-luigi-venv/bin/python",
    ),
    Engine("prefect-threads", "Prefect, threads", "run_prefect.py", "threads", scenarios="abcd", max_reps=3),
    Engine(
        "prefect-processes", "Prefect, processes", "run_prefect.py", "processes", scenarios="ab", max_reps=1
    ),
    # f: Conveyor's own configurations (bench/peers/run_ha.py), chosen by each f scenario
    Engine("sqlite", "embedded SQLite (run)", "run_ha.py", "sqlite", peer=False, scenarios=""),
    Engine("pg-1", "PostgreSQL, 1 scheduler", "run_ha.py", "1", peer=False, scenarios=""),
    Engine("pg-1-async", "PG, 1, async commit", "run_ha.py", "1-async", peer=False, scenarios=""),
    Engine("pg-run", "PG, conveyor run", "run_ha.py", "run", peer=False, scenarios=""),
    Engine("pg-2", "PostgreSQL, 2 schedulers", "run_ha.py", "2", peer=False, scenarios=""),
)
HA_ENGINES = ("sqlite", "pg-1", "pg-1-async", "pg-run", "pg-2")  # Conveyor's: --engines conveyor takes them
COLD_ENGINES = {"conveyor-again": "again", "conveyor-resumed": "resumed"}  # bench/coldstart.py's cases
TABLE_ENGINES = ("conveyor-each",)  # Conveyor's own second row in h


@dataclass(frozen=True)
class Scenario:
    key: str  # a, b, c10k, c100k, d, e, g, h, h10y
    name: str  # what the engine scripts call it
    n: int
    metric: str  # rate | ms_per_step | seconds | ms
    title: str
    reps: int
    engines: tuple[str, ...] = ()  # if given, exactly these engines (f), whatever their letters
    base: str = "conveyor"  # the engine the ratio column divides by
    notes: tuple[str, ...] = ()  # what the figures cover, under the table
    slow: float = 0.0  # its own --slow where higher (h10y: Luigi's untimed set-up takes about 30 s)

    @property
    def letter(self) -> str:
        return self.key[0]

    def takes(self, e: Engine) -> bool:
        return e.key in self.engines if self.engines else self.letter in e.scenarios


UNITS = {"rate": "tasks/s, higher is better", "ms_per_step": "ms per step, lower is better"}
UNITS["seconds"] = "seconds, lower is better"
UNITS["ms"] = "ms to decide, lower is better"


def scenarios(quick: bool, reps: int | None, fanout: int | None, chain: int | None) -> list[Scenario]:
    r = reps or (2 if quick else 5)
    rc = reps or (1 if quick else 3)  # the big ones
    a, b = fanout or (200 if quick else 1000), chain or (50 if quick else 200)
    c1, c2 = (1000, 5000) if quick else (10_000, 100_000)
    e, days = (200, 3) if quick else (1000, 30)
    f1, f2, f3 = (1000, 128, 300) if quick else (2000, 512, 300)
    h_notes = (
        "every day's partition written (untimed) before: Conveyor through its TableTarget (the row "
        "and the marker in one transaction), Luigi's row by SQL and its marker by "
        "`SQLAlchemyTarget.touch()`; the time is deciding which days are done, building the targets "
        "(Luigi: the tasks) included",
        "Conveyor: `done_among(targets)`; exists() each: `[t for t in targets if t.exists()]`; "
        "Luigi: `RangeDaily(of=DailySales, start, stop, days_back=N).requires()`, DailySales a "
        "`CopyToTable` with `MixinNaiveBulkComplete` (RangeDaily needs bulk_complete for outputs "
        "that are not files), Luigi 3.8.1 on SQLAlchemy 1.4",
        "statements: what the engine's connections sent (a `before_cursor_execute` listener), by kind; "
        "Conveyor's SQLite engine sends its BEGIN as a statement, SQLAlchemy 1.4's driver begins "
        "implicitly (not counted)",
    )
    timed = "rate: tasks over the run's started_at to ended_at in the store"
    return [
        Scenario("a", "fanout", a, "rate", f"a. {a:,} independent tasks plus one join", r),
        Scenario("b", "chain", b, "ms_per_step", f"b. a {b}-step chain", r),
        Scenario("c10k", "wide", c1, "rate", f"c. {c1:,} tasks in one wide graph (plus a join)", rc),
        Scenario("c100k", "wide", c2, "rate", f"c. {c2:,} tasks in one wide graph (plus a join)", rc),
        Scenario(
            "d",
            "cold",
            1,
            "seconds",
            "d. cold start: the whole process, one-task pipeline",
            reps or (3 if quick else 15),  # a fraction of a second each, and noisy: more of them
            notes=(
                "Conveyor: `conveyor run` with no store yet; existing store: the same once more (a new "
                "run); resumed run: after a first run failed, the next one resumes it (bench/coldstart.py)",
            ),
        ),
        Scenario("e", "idempotent", e, "rate", f"e. idempotent re-run: {e:,} tasks, all targets exist", r),
        Scenario(
            "f1",
            "noop",
            f1,
            "rate",
            f"f1. {f1:,} no-ops in 8 components (+ 8 joins): PostgreSQL against embedded SQLite",
            r,
            engines=("sqlite", "pg-1", "pg-1-async", "pg-run"),
            base="sqlite",
            notes=(
                f"{timed} (the embedded driver's start / the first claim to the last partition's end); "
                "not timed: imports, building the graph, recording the run (`conveyor submit`)",
                "embedded: `conveyor run`; PostgreSQL: one `conveyor scheduler` daemon, then `conveyor "
                "submit` (partition size 512); default workers (one per core) in both",
                "async commit: the database's synchronous_commit=off (commits do not wait for the WAL's "
                "fsync, as SQLite's synchronous=NORMAL does not); conveyor run: the embedded driver on "
                "PostgreSQL, without partitions, leases and the workers' own writes of each attempt",
                "end to end: `conveyor run` as a process / from `conveyor submit` to the run seen ended",
            ),
        ),
        *(
            Scenario(
                f"f2{suffix}",
                kind,
                f2,
                "rate",
                f"f2. {f2 // 8 + 1} tasks x 8 partitions, each task {what} 20 ms: two schedulers against one",
                rc,
                engines=("pg-1", "pg-2"),
                base="pg-1",
                notes=(
                    f"{timed} (the first claim to the last partition's end)",
                    "`--workers 1` per scheduler: two schedulers' workers together fill the 2 cores, "
                    "which they share with PostgreSQL and the schedulers",
                ),
            )
            for suffix, kind, what in (("", "sleep", "sleeping"), ("busy", "spin", "busy-looping"))
        ),
        Scenario(
            "f3",
            "takeover",
            f3,
            "seconds",
            "f3. takeover: from a SIGKILL of a partition's scheduler to the next task another one starts",
            r,
            engines=("pg-2",),
            base="",
            notes=(
                "from the kill to the first attempt's started_at after it, in the store; claimed: to the "
                "partition's taken_at; tasks sleep 50 ms; defaults --lease 2.0 --poll 0.5; the kill "
                "comes 0.5-1 s (at random) after the standby registered",
            ),
        ),
        Scenario("g", "demo", days, "seconds", f"g. the demo pipeline over {days} days (Conveyor only)", rc),
        Scenario(
            "h",
            "tables",
            365,
            "ms",
            "h. bulk completeness: which of 365 daily table partitions are done",
            r,
            notes=h_notes,
        ),
        *(
            []
            if quick
            else [
                Scenario(
                    "h10y",
                    "tables",
                    3650,
                    "ms",
                    "h. bulk completeness: which of 3,650 daily table partitions (ten years) are done",
                    rc,
                    notes=h_notes,
                    slow=90.0,
                )
            ]
        ),
    ]


def metric(s: Scenario, sample: dict[str, Any]) -> float:
    if s.metric == "rate":
        return float(sample["tasks"] / sample["seconds"])
    if s.metric == "ms_per_step":
        return float(1000 * sample["seconds"] / sample["tasks"])
    if s.metric == "ms":
        return float(1000 * sample["seconds"])
    return float(sample["seconds"])


def environment(tmp: Path) -> dict[str, str]:
    """A measurement's environment: its state in ``tmp``, Prefect's ephemeral server, and Python
    free to cache bytecode (as on a user's machine; some sandboxes set PYTHONDONTWRITEBYTECODE)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PYTHONDONTWRITEBYTECODE")}
    env |= {"CONVEYOR_HOME": str(tmp), "PREFECT_HOME": str(tmp / "prefect")}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"  # no network here: do not try to phone home
    return env


# -- one measurement --------------------------------------------------------------------------------
@dataclass
class Runner:
    timeout: float
    python: Path = BENCH_PYTHON

    def command(self, e: Engine, s: Scenario, tmp: Path) -> list[str]:
        if e.key == "conveyor" and s.name == "cold":  # the real CLI, as a user starts it
            cli = Path(sys.executable).parent / "conveyor"
            return [str(cli), "run", f"{HERE / 'pipelines.py'}:single", "--db", f"sqlite:///{tmp}/x.db"]
        if e.key in COLD_ENGINES:
            return cold_case(e).command(tmp)
        python = str(ROOT / e.python) if e.python else str(self.python) if e.peer else sys.executable
        return [python, str(PEERS / e.script), s.name, str(s.n), *([e.variant] if e.variant else [])]

    def measure(self, e: Engine, s: Scenario) -> dict[str, Any]:
        """Run one measurement in a fresh directory; a sample dict, or one with an ``error``."""
        if e.python and not (ROOT / e.python).exists():
            venv = e.python.split("/")[0]
            return {"error": f"skipped: {venv} is missing (`make {venv}/.installed` creates it)"}
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{e.key}-"))
        try:
            if s.name == "demo":
                shutil.copytree(ROOT / "examples", tmp / "examples")
            env = environment(tmp)
            if e.key in COLD_ENGINES and (setup := cold_case(e).setup) is not None:  # untimed
                done = subprocess.run(setup(tmp), cwd=tmp, env=env, capture_output=True, text=True)
                if done.returncode != cold_case(e).setup_exit:
                    return {"error": f"set-up failed (exit {done.returncode}): {done.stderr[-300:]}"}
            with open(tmp / "stdout", "w+") as out, open(tmp / "stderr", "w+") as err:
                t0 = time.perf_counter()
                proc = subprocess.Popen(
                    self.command(e, s, tmp), cwd=tmp, env=env, stdout=out, stderr=err, start_new_session=True
                )
                try:
                    code = proc.wait(self.timeout)
                    wall = time.perf_counter() - t0
                except subprocess.TimeoutExpired:
                    return {"error": f"timed out (>{self.timeout:.0f} s)", "timed_out": True}
                finally:  # its whole process group: servers, cluster workers, pool workers left behind
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
                out.seek(0)
                err.seek(0)
                lines = [ln for ln in out.read().splitlines() if ln.startswith(MARK)]
                if code != 0 or (not lines and s.name != "cold"):
                    tail = " | ".join(err.read().strip().splitlines()[-3:])
                    return {"error": f"failed (exit {code}): {tail[-300:]}"}
            sample: dict[str, Any] = json.loads(lines[-1][len(MARK) :]) if lines else {}
            sample["wall_seconds"] = wall
            if s.name == "cold":  # the whole process, from the outside
                sample.update(seconds=wall, tasks=1)
            return sample
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def cold_case(e: Engine) -> Any:
    """bench/coldstart.py's case for one of d's Conveyor variants."""
    import coldstart

    return next(c for c in coldstart.CASES if c.key == COLD_ENGINES[e.key])


# -- the plan: who runs what, how often ---------------------------------------------------------------
SCEN_BY_KEY: dict[str, Scenario] = {}  # this invocation's scenarios, filled by main()
WIDE_LIMIT = 60.0  # c: the smaller wide graph only for engines whose rate in a says it takes at most this


@dataclass
class Cell:
    """One engine in one scenario: its samples, or why it was not run (further)."""

    engine: Engine
    samples: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""  # skipped / timed out / failed / not repeated
    done: bool = False

    def values(self, s: Scenario) -> list[float]:
        return [metric(s, x) for x in self.samples]

    def median_seconds(self) -> float | None:
        return statistics.median(x["seconds"] for x in self.samples) if self.samples else None


def gate(s: Scenario, cell: Cell, cells: dict[str, dict[str, Cell]], timeout: float) -> str:
    """Why an engine should not run scenario c at all: the smaller graph at its rate in a would take
    over WIDE_LIMIT seconds, or the bigger one at its rate on the smaller one over the time limit."""
    if s.key == "c10k" and "a" in cells and cell.engine.key in cells["a"]:
        a = cells["a"][cell.engine.key]
        if not a.samples:
            return f"skipped: it did not finish a ({a.note})"
        projected = s.n / statistics.median(a.values(SCEN_BY_KEY["a"]))
        if projected > WIDE_LIMIT:
            return f"skipped: at its rate in a this takes {projected:,.0f} s, over {WIDE_LIMIT:.0f} s"
    if s.key == "c100k" and cell.engine.key != "conveyor":
        ten = cells.get("c10k", {}).get(cell.engine.key)
        t10 = ten.median_seconds() if ten else None
        if ten is None or t10 is None:
            return "skipped: it did not run or finish the smaller wide graph"
        factor = s.n / SCEN_BY_KEY["c10k"].n
        if t10 * factor > timeout:
            return (
                f"skipped: {SCEN_BY_KEY['c10k'].n:,} took {t10:.0f} s; {factor:.0f}x as many "
                f"projects {t10 * factor:,.0f} s, over the {timeout:.0f} s limit"
            )
    return ""


def run_plan(
    plan: list[Scenario], engines: list[Engine], runner: Runner, slow: float
) -> dict[str, dict[str, Cell]]:
    cells: dict[str, dict[str, Cell]] = {}
    for s in plan:
        row = {e.key: Cell(e) for e in engines if s.takes(e)}
        cells[s.key] = row
        for cell in row.values():
            if note := gate(s, cell, cells, runner.timeout):
                cell.note, cell.done = note, True
        for rep in range(s.reps):
            order = list(row.values())
            order = order[rep % len(order) :] + order[: rep % len(order)] if order else []
            for cell in order:
                if cell.done or rep >= cell.engine.max_reps:
                    continue
                sample = runner.measure(cell.engine, s)
                if "error" in sample:
                    cell.note, cell.done = sample["error"], True
                    print(f"  {s.key} {cell.engine.key}: {sample['error']}", file=sys.stderr)
                    continue
                cell.samples.append(sample)
                if sample["wall_seconds"] > max(slow, s.slow) and rep + 1 < min(s.reps, cell.engine.max_reps):
                    cell.note, cell.done = f"not repeated: one run took {sample['wall_seconds']:.0f} s", True
            print(f"  {s.key}: repetition {rep + 1}/{s.reps} done", file=sys.stderr)
    return cells


# -- summaries, targets, report ----------------------------------------------------------------------
def summarise(plan: list[Scenario], cells: dict[str, dict[str, Cell]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in plan:
        conv = cells[s.key].get(s.base)
        base = statistics.median(conv.values(s)) if conv and conv.samples else None
        rows: dict[str, Any] = {}
        for key, cell in cells[s.key].items():
            vals = cell.values(s)
            row: dict[str, Any] = {"label": cell.engine.label, "note": cell.note, "samples": cell.samples}
            if vals:
                med = statistics.median(vals)
                row |= {"median": med, "min": min(vals), "max": max(vals), "n": len(vals)}
                row["ratio"] = med / base if base else None
                row["rss_mb"] = (
                    statistics.median(x["rss_mb"] for x in cell.samples if "rss_mb" in x)
                    if any("rss_mb" in x for x in cell.samples)
                    else None
                )
                starts = [x["startup_seconds"] for x in cell.samples if "startup_seconds" in x]
                row["startup_seconds"] = statistics.median(starts) if starts else None
                for extra in ("wall_seconds_e2e", "claim_seconds", "statements", "selects"):  # f's, h's
                    if got := [x[extra] for x in cell.samples if extra in x]:
                        row[extra] = statistics.median(got)
                if "wall_seconds_e2e" in row:
                    e2e = [x["tasks"] / x["wall_seconds_e2e"] for x in cell.samples]
                    row["e2e_rate"] = statistics.median(e2e)
            rows[key] = row
        out[s.key] = {
            "title": s.title,
            "n": s.n,
            "metric": s.metric,
            "unit": UNITS[s.metric],
            "engines": rows,
        }
        if s.base != "conveyor":
            base_cell = cells[s.key].get(s.base)
            out[s.key]["ratio_to"] = base_cell.engine.label if base_cell else ""
        if s.notes:
            out[s.key]["notes"] = list(s.notes)
    return out


def check_targets(summary: dict[str, Any]) -> list[dict[str, str]]:
    def med(key: str, engine: str = "conveyor") -> float | None:
        value = summary.get(key, {}).get("engines", {}).get(engine, {}).get("median")
        return float(value) if value is not None else None

    def stat(key: str, name: str) -> float | None:
        value = summary.get(key, {}).get("engines", {}).get("conveyor", {}).get(name)
        return float(value) if value is not None else None

    def rss(key: str) -> float | None:
        value = summary.get(key, {}).get("engines", {}).get("conveyor", {}).get("rss_mb")
        return float(value) if value is not None else None

    checks: list[tuple[str, str, Callable[[], tuple[float, float] | None], bool, str]] = [
        # (scenario, goal, () -> (measured, limit), at least?, how the measure reads)
        (
            "a",
            "at least 0.6x the process pool's rate",
            lambda: _ratio(med("a"), med("a", "pool"), 0.6),
            True,
            "{:.2f}x",
        ),
        (
            "a",
            "at least 10x Dask LocalCluster's rate",
            lambda: _ratio(med("a"), med("a", "dask-cluster"), 10),
            True,
            "{:.1f}x",
        ),
        ("b", "at most 0.5 ms per step", lambda: _pair(med("b"), 0.5), False, "{:.3f} ms"),
        (
            "c100k",
            "throughput on the bigger wide graph at least 0.8x its rate in a",
            lambda: _ratio(med("c100k"), med("a"), 0.8),
            True,
            "{:.2f}x",
        ),
        (
            "c100k",
            "the scheduler's peak RSS at most 300 MB",
            lambda: _pair(rss("c100k"), 300),
            False,
            "{:.0f} MB",
        ),
        ("d", "cold start at most 0.3 s", lambda: _pair(med("d"), 0.3), False, "{:.3f} s"),
        (
            "d",
            "resuming a run at most 0.3 s",
            lambda: _pair(med("d", "conveyor-resumed"), 0.3),
            False,
            "{:.3f} s",
        ),
        ("e", "at least 20,000 tasks/s decided", lambda: _pair(med("e"), 20_000), True, "{:,.0f} tasks/s"),
        (
            "h",
            "decides 365 days of table targets in one query",
            lambda: _pair(stat("h", "selects"), 1),
            False,
            "{:.0f} SELECT",
        ),
        (
            "f1",
            "on PostgreSQL with one scheduler at least 0.5x the embedded SQLite rate",
            lambda: _ratio(med("f1", "pg-1"), med("f1", "sqlite"), 0.5),
            True,
            "{:.2f}x",
        ),
        *(
            (
                key,
                f"with two schedulers at least 1.6x one on a partitioned graph ({what} tasks)",
                lambda key=key: _ratio(med(key, "pg-2"), med(key, "pg-1"), 1.6),
                True,
                "{:.2f}x",
            )
            for key, what in (("f2", "sleeping"), ("f2busy", "busy"))
        ),
        (
            "f3",
            "takes a killed scheduler's partition over within 3 s",
            lambda: _pair(med("f3", "pg-2"), 3.0),
            False,
            "{:.2f} s",
        ),
    ]
    out = []
    for key, goal, get, at_least, fmt in checks:
        if key not in summary:
            continue
        got = get()
        if got is None:
            out.append({"scenario": key, "target": goal, "measured": "n/a", "status": "n/a"})
            continue
        value, limit = got
        ok = value >= limit if at_least else value <= limit
        out.append(
            {
                "scenario": key,
                "target": goal,
                "measured": fmt.format(value),
                "status": "PASS" if ok else "MISS",
            }
        )
    return out


def _ratio(a: float | None, b: float | None, limit: float) -> tuple[float, float] | None:
    return (a / b, limit) if a is not None and b else None


def _pair(a: float | None, limit: float) -> tuple[float, float] | None:
    return (a, limit) if a is not None else None


def fmt_value(v: float, kind: str) -> str:
    if kind == "rate":
        return f"{v:,.0f}" if v >= 10 else f"{v:.2f}"
    return f"{v:.3f}" if v < 10 else f"{v:,.1f}"


HEADER = ("engine", "median", "min-max", "n", "x Conveyor", "RSS MB", "note")


def table(sc: dict[str, Any]) -> list[tuple[str, ...]]:
    """One scenario's rows: engine, median, min-max, runs, ratio to Conveyor, peak RSS, notes."""
    kind = sc["metric"]
    out: list[tuple[str, ...]] = []
    for row in sc["engines"].values():
        if "median" not in row:
            out.append((row["label"], "-", "", "", "", "", row["note"]))
            continue
        notes = [f"start-up {row['startup_seconds']:.1f} s, not timed"] if row.get("startup_seconds") else []
        notes += [f"end to end {fmt_value(row['e2e_rate'], 'rate')} tasks/s"] if row.get("e2e_rate") else []
        notes += [f"claimed at {row['claim_seconds']:.2f} s"] if row.get("claim_seconds") else []
        if "statements" in row:  # h: the same in every sample; the kinds of the first
            kinds = ", ".join(f"{v:,} {k}" for k, v in row["samples"][0].get("by_kind", {}).items())
            notes += [f"{row['statements']:,.0f} statements ({kinds})"]
        notes += [row["note"]] if row["note"] else []
        out.append(
            (
                row["label"],
                fmt_value(row["median"], kind),
                f"{fmt_value(row['min'], kind)}-{fmt_value(row['max'], kind)}",
                str(row["n"]),
                f"{row['ratio']:.2f}" if row.get("ratio") else "-",
                f"{row['rss_mb']:.0f}" if row.get("rss_mb") else "-",
                "; ".join(notes),
            )
        )
    return out


F_TITLE = "f. Conveyor on PostgreSQL and with two schedulers"


def report(
    summary: dict[str, Any],
    targets: list[dict[str, str]],
    markdown: bool = False,
    skipped: dict[str, str] | None = None,
) -> list[str]:
    """The tables and the targets, as plain text for the terminal or as Markdown for the docs."""
    lines: list[str] = []
    widths = (24, 10, 21, 2, 10, 7, 0)
    for key, sc in summary.items():
        head = f"{sc['title']}: {sc['unit']}; median and min-max of n runs"
        header = HEADER
        if "ratio_to" in sc:  # f: the ratio column divides by another engine than Conveyor
            header = (*HEADER[:4], "x base", *HEADER[5:])
            head += f"; x base: ratio to {sc['ratio_to']}" if sc["ratio_to"] else ""
        if markdown:
            lines += [
                "",
                f"**{head}**",
                "",
                "| " + " | ".join(header) + " |",
                "|---|--:|--:|--:|--:|--:|---|",
            ]
            lines += ["| " + " | ".join(cells) + " |" for cells in table(sc)]
        else:
            lines += ["", head, ""]
            for cells in [header, *table(sc)]:
                text = [
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(cells, widths, strict=True))
                ]
                lines.append("  " + " ".join(text[:-1]) + "  " + cells[-1])
        if sc.get("notes"):
            lines += [""] if markdown else []
            lines += [f"{'- ' if markdown else '  - '}{note}" for note in sc["notes"]]
        for t in targets:
            if t["scenario"] == key:
                status = f"**{t['status']}**" if markdown else t["status"]
                lines.append(
                    f"{'- ' if markdown else '  '}target: Conveyor {t['target']}: {t['measured']}  {status}"
                )
    if skipped and "f" in skipped:
        lines += ["", f"{F_TITLE}: skipped: {skipped['f']}"]
    if targets and not markdown:
        lines += ["", "targets: " + ", ".join(f"{t['scenario']} {t['status']}" for t in targets)]
    return lines


# -- the chart ---------------------------------------------------------------------------------------
def chart(summary: dict[str, Any], engines: list[Engine], path: Path, title: str) -> bool:
    """Two panels of grouped bars (median, whiskers min-max): throughputs and latencies, log scales.
    False if there was nothing to draw (f is in the tables only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    short = {
        "a": "a. fan-out + join",
        "c10k": "c. wide graph",
        "c100k": "c. wide graph",
        "e": "e. re-run: decided",
        "b": "b. chain: per step",
        "d": "d. cold start",
        "g": f"g. demo, {summary['g']['n'] if 'g' in summary else 30} days",
    }
    panels: list[tuple[str, list[str]]] = [
        ("throughput: tasks/s (log scale; higher is better)", ["a", "c10k", "c100k", "e"]),
        ("latency: ms (log scale; lower is better)", ["b", "d", "g"]),
    ]
    if not any(k in summary for _, keys in panels for k in keys):
        return False
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5), width_ratios=[4, 3], layout="constrained")
    colors = {e.key: f"C{i}" for i, e in enumerate(engines)}
    seen: set[str] = set()
    for ax, (label, wanted) in zip(axes, panels, strict=True):
        keys = [k for k in wanted if k in summary]
        for g, key in enumerate(keys):
            rows = summary[key]["engines"]
            present = [e for e in engines if "median" in rows.get(e.key, {})]
            width = 0.8 / max(3, len(present))
            scale = 1000.0 if summary[key]["metric"] == "seconds" else 1.0
            for i, e in enumerate(present):
                row = rows[e.key]
                y = row["median"] * scale
                err = [[y - row["min"] * scale], [row["max"] * scale - y]]
                ax.bar(
                    g + (i - (len(present) - 1) / 2) * width,
                    y,
                    width,
                    yerr=err,
                    capsize=2,
                    color=colors[e.key],
                    label=None if e.key in seen else e.label,
                    edgecolor="black" if e.key == "conveyor" else "none",
                )
                seen.add(e.key)
        names = [
            f"{short[k]}\n{summary[k]['n']:,} tasks" if k in ("a", "c10k", "c100k", "e") else short[k]
            for k in keys
        ]
        ax.set_xticks(range(len(keys)), names)
        ax.set_yscale("log")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=min(8, len(seen)), frameon=False)
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# -- the machine -------------------------------------------------------------------------------------
def machine(python: Path, with_peers: bool, others: Collection[str] = ()) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "conveyor_revision": git_revision(),
        "conveyor_sources": source_digest(),
        "load_average_start": os.getloadavg()[0],  # others' work on this machine skews the figures
    }
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            info["cpu"] = line.split(":", 1)[1].strip()
            break
    if Path("/proc/meminfo").exists():
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        info["memory_gib"] = round(kib / 1024**2, 1)
    import conveyor

    info["conveyor"] = conveyor.__version__
    prime = f"import sys; sys.path.insert(0, {str(PEERS)!r}); import conveyor.cli, conveyor.engine, common"
    subprocess.run([sys.executable, "-c", prime], check=True, env=environment(Path(tempfile.gettempdir())))
    if with_peers:  # also imports each one once, so the first measurement does not pay for a cold disk
        code = (
            "import importlib.metadata as m, json, platform, luigi, dask, distributed, prefect; "
            "print(json.dumps({'python': platform.python_version(), "
            f"**{{p: m.version(p) for p in {PEER_PACKAGES!r}}}}}))"
        )
        env = environment(Path(tempfile.gettempdir()))
        out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, env=env)
        info["peers"] = json.loads(out.stdout)
    for other in sorted(o for o in others if (ROOT / o).exists()):  # h's Luigi: its own venv
        code = (
            "import importlib.metadata as m, json, luigi, sqlalchemy; "
            "print(json.dumps({p: m.version(p) for p in ('luigi', 'sqlalchemy')}))"
        )
        env = environment(Path(tempfile.gettempdir()))
        cmd = [str(ROOT / other), "-c", code]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        info.setdefault("other_pythons", {})[other] = json.loads(out.stdout)
    return info


def source_digest() -> str:
    """A digest of Conveyor's sources: to tell whether they changed while the benchmark ran."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted((ROOT / "src" / "conveyor").rglob("*.py")):
        h.update(str(path).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def chart_title(info: dict[str, Any]) -> str:
    peers = info.get("peers", {})
    versions = ", ".join(f"{p} {peers[p]}" for p in PEER_PACKAGES if p in peers)
    title = f"Conveyor {info['conveyor']} ({info['conveyor_revision']}), {info['cpus']} cores, "
    return title + f"Python {info['python']}" + (f"; {versions}" if versions else "")


# -- the docs --------------------------------------------------------------------------------------------
DOCS = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def publish(saved: dict[str, Any], docs: Path = DOCS) -> None:
    """Put a results file's machine, targets and tables between the markers in docs/performance.md,
    and its chart at docs/images/bench.png."""
    m = saved["machine"]
    peers = m.get("peers", {})
    versions = ", ".join(f"{p} {peers[p]}" for p in PEER_PACKAGES if p in peers)
    block = [
        f"Measured {saved['when'][:16].replace('T', ' ')} in one run of `make bench` (the harness took "
        f"{saved['seconds'] / 60:.0f} minutes), on {m['cpus']} cores ({m.get('cpu', 'unknown CPU')}), "
        f"{m.get('memory_gib', '?')} GiB of memory, {m['platform']}; Python {m['python']}; "
        f"Conveyor {m['conveyor']} at {m['conveyor_revision']}; {versions or 'no peers'}.",
        *(
            ["", f"Note: {m['conveyor_changed']}, so its figures mix versions."]
            if "conveyor_changed" in m
            else []
        ),
        "",
        "| scenario | target for Conveyor | measured | |",
        "|---|---|--:|---|",
        *(
            f"| {t['scenario'][0]} | {t['target']} | {t['measured']} | **{t['status']}** |"
            for t in saved["targets"]
        ),
        *(
            [f"| f | PostgreSQL, two schedulers | skipped: {saved['skipped']['f']} | |"]
            if "f" in saved.get("skipped", {})
            else []
        ),
        "",
        "![Throughput and latency of each engine in each scenario](images/bench.png)",
        *report(saved["scenarios"], saved["targets"], markdown=True, skipped=saved.get("skipped")),
    ]
    text = docs.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    docs.write_text(text[:start] + "\n" + "\n".join(block) + "\n" + text[end:])
    engines = [e for e in ENGINES if any(e.key in sc["engines"] for sc in saved["scenarios"].values())]
    chart(saved["scenarios"], engines, docs.parent / "images" / "bench.png", chart_title(m))
    print(f"updated {docs} and {docs.parent / 'images' / 'bench.png'}")


# -- f: PostgreSQL ------------------------------------------------------------------------------------
def run_f(
    plan: list[Scenario],
    engines: list[Engine],
    runner: Runner,
    slow: float,
    info: dict[str, Any],
    skipped: dict[str, str],
) -> dict[str, dict[str, Cell]]:
    """Scenario f against a throwaway PostgreSQL server, started for f only (the other scenarios
    run without it); ``skipped['f']`` says why not, if there is none here."""
    import pgserver

    if why := pgserver.missing():
        skipped["f"] = why
        print(f"  f: skipped: {why}", file=sys.stderr)
        return {}
    with pgserver.server() as pg:
        cores = f"{os.cpu_count()} cores, shared by PostgreSQL, the schedulers and their workers"
        note = f"PostgreSQL {pg.version.split()[0]} on this machine, {pg.settings} (its defaults); {cores}"
        info["postgresql"] = {"version": pg.version, "settings": pg.settings, "note": note}
        os.environ["BENCH_PG"] = pg.address  # the measurements' environment passes it on
        try:
            return run_plan(plan, engines, runner, slow)
        finally:
            del os.environ["BENCH_PG"]


# -- main ---------------------------------------------------------------------------------------------
def pick(values: str | None, known: dict[str, Any], what: str) -> list[str]:
    if not values:
        return list(known)
    out = []
    for v in values.split(","):
        if v.strip() not in known:
            raise SystemExit(f"bench: unknown {what} {v.strip()!r}; one of {', '.join(known)}")
        out.append(v.strip())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Conveyor against Luigi, Dask, Prefect and a process pool.")
    ap.add_argument(
        "--only",
        help="scenarios, comma-separated: letters (a,b,c,d,e,f,g,h) or names (fanout, chain, "
        "wide, cold, idempotent, demo, tables; f's: noop, sleep, spin, takeover)",
    )
    ap.add_argument(
        "--engines", help=f"engines, comma-separated (default all): {', '.join(e.key for e in ENGINES)}"
    )
    ap.add_argument("--reps", type=int, help="repetitions (default 5; 3 for c and g)")
    ap.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK") == "1",
        help="a smoke run: fewer repetitions, smaller graphs, a 60 s limit (or BENCH_QUICK=1)",
    )
    ap.add_argument("--timeout", type=float, help="time limit of one measurement in seconds (default 180)")
    ap.add_argument(
        "--slow", type=float, default=45.0, help="do not repeat a run that took longer (default 45 s)"
    )
    ap.add_argument("--fanout", type=int, help="tasks in a (default 1,000)")
    ap.add_argument("--chain", type=int, help="steps in b (default 200)")
    ap.add_argument(
        "--python", type=Path, default=BENCH_PYTHON, help=f"the peers' Python (default {BENCH_PYTHON})"
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"where results go (default {RESULTS})")
    ap.add_argument("--markdown", type=Path, help="print the tables of a results file as Markdown, and exit")
    ap.add_argument(
        "--publish", type=Path, help="put a results file into docs/performance.md and docs/images/, and exit"
    )
    args = ap.parse_args(argv)
    if args.markdown or args.publish:
        saved = json.loads((args.markdown or args.publish).read_text())
        if args.publish:
            publish(saved)
        else:
            md = report(saved["scenarios"], saved["targets"], markdown=True, skipped=saved.get("skipped"))
            print("\n".join(md).strip())
        return 0

    started = time.perf_counter()
    all_scenarios = scenarios(args.quick, args.reps, args.fanout, args.chain)
    SCEN_BY_KEY.update({s.key: s for s in all_scenarios})
    names = {s.letter: s.letter for s in all_scenarios}
    names |= {s.name: s.key if s.letter == "f" else s.letter for s in all_scenarios}  # f's one by one
    wanted = {names[x] for x in pick(args.only, names, "scenario")}
    plan = [s for s in all_scenarios if s.letter in wanted or s.key in wanted]
    engine_keys = pick(args.engines, {e.key: e for e in ENGINES}, "engine")
    if "conveyor" in engine_keys:
        engine_keys += [*HA_ENGINES, *COLD_ENGINES, *TABLE_ENGINES]
    engines = [e for e in ENGINES if e.key in engine_keys and any(s.takes(e) for s in plan)]
    with_peers = any(e.peer for e in engines)
    if with_peers and not args.python.exists():
        raise SystemExit(
            f"bench: {args.python} is missing: `make bench` creates it (or pass --engines conveyor,pool)"
        )
    timeout = args.timeout or (60.0 if args.quick else 180.0)
    info = machine(args.python, with_peers, {e.python for e in engines if e.python})
    print(
        f"bench: {len(plan)} scenarios x {len(engines)} engines; limit {timeout:.0f} s per run",
        file=sys.stderr,
    )

    runner = Runner(timeout, args.python)
    cells = run_plan([s for s in plan if s.letter != "f"], engines, runner, args.slow)
    skipped: dict[str, str] = {}
    if f_plan := [s for s in plan if s.letter == "f"]:
        cells |= run_f(f_plan, engines, runner, args.slow, info, skipped)
        plan = [s for s in plan if s.letter != "f" or s.key in cells]
    summary = summarise(plan, cells)
    for sc in (summary[s.key] for s in plan if s.letter == "f"):
        sc["notes"].append(info["postgresql"]["note"])
    targets = check_targets(summary)
    lines = report(summary, targets, skipped=skipped)
    took = time.perf_counter() - started
    info["load_average_end"] = os.getloadavg()[0]
    lines.append(f"the whole benchmark took {took / 60:.1f} min")
    lines.append(
        f"load average (1 min) at the start {info['load_average_start']:.2f}, at the end "
        f"{info['load_average_end']:.2f}, on {info['cpus']} cores"
    )
    if source_digest() != info["conveyor_sources"]:
        info["conveyor_changed"] = f"Conveyor's sources changed during the run (now at {git_revision()})"
        lines.append(f"warning: {info['conveyor_changed']}: its figures mix versions")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": info,
        "quick": args.quick,
        "timeout_seconds": timeout,
        "scenarios": summary,
        "targets": targets,
        "skipped": skipped,
        "seconds": took,
        "report": lines,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2) + "\n"
    (args.out / f"bench-{stamp}.json").write_text(text)
    (args.out / "latest.json").write_text(text)
    md = report(summary, targets, markdown=True, skipped=skipped)
    (args.out / "latest.md").write_text("\n".join(md).strip() + "\n")
    drawn = chart(summary, engines, args.out / "bench.png", chart_title(info))
    print("\n".join(lines))
    print(
        f"\nwritten: {args.out / f'bench-{stamp}.json'}, latest.json, latest.md (tables)"
        + (", bench.png" if drawn else " (no chart: nothing to draw)")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
