"""Embedded benchmark: Conveyor run as a user runs it, beside a plain process pool.

    .venv/bin/python bench/embedded.py            # or: make bench

Scenarios
  fanout  1,000 independent no-op tasks plus one join     -> tasks/s (higher is better)
  chain   a chain of 200 no-op steps                      -> ms per step (lower is better)

Conveyor: ``conveyor.run("bench/pipelines.py:NAME", db=...)`` with a fresh SQLite store (WAL) in
a temporary directory that is also ``CONVEYOR_HOME``, and the default workers (one per CPU). The
time is the whole call: loading and building the pipeline, creating the store and the run,
forking the workers, driving every task durably, shutting down.

Baseline: ``concurrent.futures.ProcessPoolExecutor(2)`` calling a no-op function the same number
of times (fanout: submit all, then wait; chain: ``submit().result()`` one after the other),
timed from creating the pool to its shutdown.

Repetitions are interleaved (Conveyor, pool, Conveyor, pool, ...) after one warm-up round that is
not counted; the report gives the median and the min-max, and Conveyor's ratio to the pool
(pool time / Conveyor time: 1.0 means as fast as the pool). Results also go to
bench/results/embedded.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import conveyor

HERE = Path(__file__).resolve().parent
PIPELINES = HERE / "pipelines.py"
RESULTS = HERE / "results" / "embedded.json"
POOL_WORKERS = 2
TARGETS = {"fanout": ("ratio", 0.6), "chain": ("ms_per_step", 0.5)}


def nothing() -> None:
    """The process pool's no-op call."""


# -- the two contenders -----------------------------------------------------------------------
def conveyor_run(name: str, n: int) -> dict[str, float]:
    """One ``conveyor.run`` of pipeline ``name`` with ``n`` tasks, in a fresh home and store."""
    tmp = tempfile.mkdtemp(prefix="conveyor-bench-")
    old_home = os.environ.get("CONVEYOR_HOME")
    os.environ["CONVEYOR_HOME"] = tmp
    try:
        t0 = time.perf_counter()
        result = conveyor.run(f"{PIPELINES}:{name}", {"n": n}, db=f"sqlite:///{tmp}/conveyor.db")
        seconds = time.perf_counter() - t0
    finally:
        if old_home is None:
            os.environ.pop("CONVEYOR_HOME", None)
        else:
            os.environ["CONVEYOR_HOME"] = old_home
        shutil.rmtree(tmp, ignore_errors=True)
    if result.state != "succeeded":
        raise SystemExit(f"bench: conveyor run of {name} ended {result.state}: {result.failed}")
    return {"seconds": seconds, "drive_seconds": result.elapsed}


def pool_fanout(n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(POOL_WORKERS) as pool:
        wait([pool.submit(nothing) for _ in range(n)])
    return {"seconds": time.perf_counter() - t0}


def pool_chain(n: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with ProcessPoolExecutor(POOL_WORKERS) as pool:
        for _ in range(n):
            pool.submit(nothing).result()
    return {"seconds": time.perf_counter() - t0}


# -- reporting --------------------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def describe(name: str, n: int, conv: list[dict[str, float]], pool: list[dict[str, float]]) -> dict[str, Any]:
    tasks = n + 1 if name == "fanout" else n
    c_sec = [s["seconds"] for s in conv]
    p_sec = [s["seconds"] for s in pool]
    out: dict[str, Any] = {
        "tasks": tasks,
        "conveyor_seconds": summary(c_sec),
        "conveyor_drive_seconds": summary([s["drive_seconds"] for s in conv]),
        "pool_seconds": summary(p_sec),
        "ratio": statistics.median(p_sec) / statistics.median(c_sec),
        "samples": {"conveyor": conv, "pool": pool},
    }
    if name == "fanout":
        out["conveyor_tasks_per_s"] = summary([tasks / s for s in c_sec])
        out["pool_tasks_per_s"] = summary([tasks / s for s in p_sec])
    else:
        out["conveyor_ms_per_step"] = summary([1000 * s / n for s in c_sec])
        out["pool_ms_per_step"] = summary([1000 * s / n for s in p_sec])
    return out


def fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f}  ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def report(results: dict[str, Any]) -> list[str]:
    lines = []
    misses = []
    if "fanout" in results:
        r = results["fanout"]
        lines += [
            f"fanout: {r['tasks']} tasks (no-ops + join), median (min-max) of {results['reps']}",
            f"  conveyor  {fmt(r['conveyor_tasks_per_s'])} tasks/s"
            f"   [drive only {fmt(r['conveyor_drive_seconds'], 3)} s]",
            f"  pool      {fmt(r['pool_tasks_per_s'])} tasks/s",
            f"  ratio     {r['ratio']:.2f}x the pool's rate (target >= {TARGETS['fanout'][1]}x)",
        ]
        if r["ratio"] < TARGETS["fanout"][1]:
            misses.append("fanout")
    if "chain" in results:
        r = results["chain"]
        lines += [
            f"chain: {r['tasks']} sequential steps, median (min-max) of {results['reps']}",
            f"  conveyor  {fmt(r['conveyor_ms_per_step'], 3)} ms/step"
            f"   [drive only {fmt(r['conveyor_drive_seconds'], 3)} s]",
            f"  pool      {fmt(r['pool_ms_per_step'], 3)} ms/step",
            f"  ratio     {r['ratio']:.2f}x the pool's speed (target < {TARGETS['chain'][1]} ms/step)",
        ]
        if r["conveyor_ms_per_step"]["median"] >= TARGETS["chain"][1]:
            misses.append("chain")
    lines.append("targets missed: " + ", ".join(misses) if misses else "all targets met")
    return lines


def git_revision() -> str:
    try:
        root = HERE.parent
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds (default 1)")
    ap.add_argument("--fanout", type=int, default=1000, help="independent tasks in fanout")
    ap.add_argument("--chain", type=int, default=200, help="steps in chain")
    ap.add_argument("--only", choices=["fanout", "chain"], help="run one scenario")
    ap.add_argument("--json", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = ap.parse_args(argv)

    plan: dict[str, tuple[int, Callable[[int], dict[str, float]]]] = {
        "fanout": (args.fanout, pool_fanout),
        "chain": (args.chain, pool_chain),
    }
    if args.only:
        plan = {args.only: plan[args.only]}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {k: {"conveyor": [], "pool": []} for k in plan}
    for rep in range(args.warmup + args.reps):
        for name, (n, pool_fn) in plan.items():
            # alternate who goes first, so neither always runs on a machine the other just warmed
            order = ["conveyor", "pool"] if rep % 2 == 0 else ["pool", "conveyor"]
            for who in order:
                s = conveyor_run(name, n) if who == "conveyor" else pool_fn(n)
                if rep >= args.warmup:
                    samples[name][who].append(s)
        print(
            f"round {rep + 1}/{args.warmup + args.reps}{' (warm-up)' if rep < args.warmup else ''}",
            file=sys.stderr,
        )

    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "conveyor": conveyor.__version__,
        "revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pool_workers": POOL_WORKERS,
        "reps": args.reps,
        "warmup": args.warmup,
    }
    for name, (n, _) in plan.items():
        results[name] = describe(name, n, samples[name]["conveyor"], samples[name]["pool"])
    lines = report(results)
    results["report"] = lines
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))
    print(f"written: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
