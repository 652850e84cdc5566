"""Cold start: the whole ``conveyor run`` process of a one-task pipeline, beside Luigi's.

    .venv/bin/python bench/coldstart.py [--reps 20] [--json out.json]

Each case is one process, timed from the outside (start to exit), in a fresh temporary
directory that is also ``CONVEYOR_HOME``, with Python free to cache bytecode (as on a user's
machine). Repetitions are interleaved (each repetition runs every case once, the order
rotating), and the report gives medians, min-max and each median as a ratio to Luigi's.

- fresh: ``conveyor run bench/pipelines.py:single`` with no store yet (it creates one);
- again: the same command once more, on the store the first one created: a new run;
- resumed: ``conveyor run bench/pipelines.py:resumable`` after a first run of it failed (its one
  task fails the first time): the run is resumed and the failed task runs again;
- Luigi: the same one-task graph (``bench/peers/run_luigi.py cold``), one worker, in
  ``.bench-venv``. Untimed set-up (the first run of again and resumed) happens before the clock.

The harness runs these too, as scenario d (``bench/harness.py --only d``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIPELINES = HERE / "pipelines.py"
BENCH_PYTHON = HERE.parent / ".bench-venv" / "bin" / "python"
TARGET = 0.3  # seconds: the goal for the whole `conveyor run` of a one-task pipeline


def conveyor_cli() -> str:
    return str(Path(sys.executable).parent / "conveyor")


def conveyor_run(tmp: Path, pipeline: str) -> list[str]:
    return [conveyor_cli(), "run", f"{PIPELINES}:{pipeline}", "--db", f"sqlite:///{tmp}/x.db"]


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    command: Callable[[Path], list[str]]
    setup: Callable[[Path], list[str]] | None = None  # run once, untimed, before the timed command
    setup_exit: int = 0
    pythonpath: str = ""  # another Conveyor's sources (--against), first on the path


CASES = (
    Case("fresh", "Conveyor, new store", lambda tmp: conveyor_run(tmp, "single")),
    Case(
        "again",
        "Conveyor, existing store",
        lambda tmp: conveyor_run(tmp, "single"),
        setup=lambda tmp: conveyor_run(tmp, "single"),
    ),
    Case(
        "resumed",
        "Conveyor, resumed run",
        lambda tmp: conveyor_run(tmp, "resumable"),
        setup=lambda tmp: conveyor_run(tmp, "resumable"),
        setup_exit=1,
    ),
    Case(
        "luigi",
        "Luigi, 1 worker",
        lambda tmp: [str(BENCH_PYTHON), str(HERE / "peers" / "run_luigi.py"), "cold", "1", "1"],
    ),
)


def environment(tmp: Path, pythonpath: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "CONVEYOR_DB")}
    return env | {"CONVEYOR_HOME": str(tmp)} | ({"PYTHONPATH": pythonpath} if pythonpath else {})


def against(src: Path) -> tuple[Case, ...]:
    """Conveyor's cases once more, with the sources in ``src`` (another checkout's ``src``)."""
    return tuple(
        Case(f"{c.key}@", f"{c.label} ({src.parent.name})", c.command, c.setup, c.setup_exit, str(src))
        for c in CASES
        if c.key != "luigi"
    )


def measure(case: Case) -> float:
    """One timed process of ``case`` in a fresh directory: its wall time in seconds."""
    tmp = Path(tempfile.mkdtemp(prefix=f"cold-{case.key}-"))
    try:
        env = environment(tmp, case.pythonpath)
        if case.setup is not None:
            done = subprocess.run(case.setup(tmp), cwd=tmp, env=env, capture_output=True, text=True)
            if done.returncode != case.setup_exit:
                raise SystemExit(
                    f"coldstart: {case.key}'s set-up exited {done.returncode}: {done.stderr[-500:]}"
                )
        t0 = time.perf_counter()
        proc = subprocess.run(case.command(tmp), cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"coldstart: {case.key} exited {proc.returncode}: {proc.stderr[-500:]}")
        return wall
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(reps: int, cases: tuple[Case, ...] = CASES) -> dict[str, list[float]]:
    for case in cases:  # once untimed each: bytecode cached, files in the page cache
        measure(case)
    samples: dict[str, list[float]] = {c.key: [] for c in cases}
    for rep in range(reps):
        k = rep % len(cases)
        for case in cases[k:] + cases[:k]:
            samples[case.key].append(measure(case))
    return samples


def report(samples: dict[str, list[float]], cases: tuple[Case, ...] = CASES) -> list[str]:
    luigi = statistics.median(samples["luigi"]) if samples.get("luigi") else None
    lines = [
        "cold start: the whole process, one-task pipeline (seconds, median of n; lower is better)",
        f"{'case':<36} {'median':>7} {'min-max':>13} {'n':>3} {'x Luigi':>8}",
    ]
    for case in cases:
        xs = samples.get(case.key)
        if not xs:
            continue
        med = statistics.median(xs)
        ratio = f"{med / luigi:.2f}" if luigi else "-"
        lines.append(f"{case.label:<36} {med:>7.3f} {min(xs):>6.3f}-{max(xs):.3f} {len(xs):>3} {ratio:>8}")
    for key in ("fresh", "again", "resumed"):
        if samples.get(key):
            med = statistics.median(samples[key])
            verdict = "PASS" if med <= TARGET else "MISS"
            lines.append(f"target: Conveyor ({key}) at most {TARGET} s: {med:.3f} s  {verdict}")
    lines.append(f"load average (1 min) now {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20, help="repetitions of each case (default 20)")
    ap.add_argument("--json", type=Path, help="also write the samples here")
    ap.add_argument(
        "--against", type=Path, help="also Conveyor from these sources (another checkout's src), interleaved"
    )
    args = ap.parse_args()
    cases = CASES if BENCH_PYTHON.exists() else CASES[:-1]
    if len(cases) < len(CASES):
        print("coldstart: no .bench-venv (make .bench-venv/.installed): Luigi left out", file=sys.stderr)
    if args.against:
        cases += against(args.against.resolve())
    samples = run(args.reps, cases)
    print("\n".join(report(samples, cases)))
    if args.json:
        args.json.write_text(json.dumps(samples, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
