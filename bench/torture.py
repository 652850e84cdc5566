"""`conveyor run` under repeated SIGKILL: does any completed task run again, and does any task
fail because of the kills alone?

    .venv/bin/python bench/torture.py [--kills 100] [--tasks 24] [--seed 1]

A pipeline of target-less tasks (each appends a line to effects.log, then returns) is started
with `conveyor run` and SIGKILLed at a random moment, again and again; each new `conveyor run`
resumes the same run. When a run gets to its end before the kill, the next round starts a new
run (another ``round`` parameter). At the end the last round is run to completion. Reported:

- kills: how many SIGKILLs landed while a run was going;
- re-run: task executions beyond the first, per round (a completed task executed again);
- failed by kills: task instances that ended failed (every task here succeeds when it runs);
- lost attempts counted: attempts recorded lost (a dead driver's loss must not count).
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PIPELINE = """
    import os, random, time
    from conveyor import pipeline, task

    @task
    def work(round: int, i: int) -> int:
        time.sleep(random.uniform(0.05, 0.25))
        with open("effects.log", "a") as f:
            f.write(f"{round}:{i}\\n")
            f.flush()
            os.fsync(f.fileno())
        return i

    @task
    def total(round: int) -> None:
        print("all done")

    @pipeline
    def tortured(round: int = 0, n: int = 24):
        total(round, after=[work(round, i) for i in range(n)])
"""


def conveyor(root: Path, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CONVEYOR_HOME=str(root / ".conveyor"))
    env.pop("CONVEYOR_DB", None)
    with open(root / "out.txt", "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", "run", "p.py:tortured", *args],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )


def told(root: Path) -> bool:
    """Did the last `conveyor run` say that its run succeeded (killed after that, or not)?"""
    return "succeeded" in (root / "out.txt").read_text(errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=100)
    ap.add_argument("--tasks", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="conveyor-torture-"))
    (root / "p.py").write_text(textwrap.dedent(PIPELINE))
    rounds, kills, started = 0, 0, time.time()
    params = lambda k: ["-p", f"round={k}", "-p", f"n={args.tasks}"]  # noqa: E731
    while kills < args.kills:
        proc = conveyor(root, *params(rounds))
        time.sleep(rng.uniform(0.3, 1.6))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        if told(root):
            rounds += 1  # it told its end (before the kill, if any): the user starts a new run
        if kills % 10 == 0 and proc.returncode == -signal.SIGKILL:
            print(f"  {kills} kills, {rounds} rounds done, {time.time() - started:.0f}s", flush=True)
    code = conveyor(root, *params(rounds)).wait()  # finish the last round (the others ended)
    if code != 0:
        print(f"round {rounds}: the final `conveyor run` exited {code}", flush=True)
    time.sleep(0.5)
    effects = collections.Counter((root / "effects.log").read_text().split())
    with sqlite3.connect(root / ".conveyor" / "conveyor.db") as db:
        failed = db.execute("SELECT count(*) FROM task_instances WHERE state = 'failed'").fetchone()[0]
        lost = db.execute("SELECT count(*) FROM attempts WHERE state = 'lost'").fetchone()[0]
        counted = db.execute("SELECT coalesce(sum(lost), 0) FROM task_instances").fetchone()[0]
        runs = db.execute("SELECT state, count(*) FROM runs GROUP BY state").fetchall()
    rerun = sum(n - 1 for n in effects.values())
    missing = (rounds + 1) * args.tasks - len(effects)
    print(f"kills: {kills}, rounds: {rounds + 1}, runs by state: {dict(runs)}")
    print(f"completed tasks re-run: {rerun}")
    print(f"tasks never run: {missing}")
    print(f"tasks failed by kills: {failed}")
    print(f"attempts recorded lost: {lost}, of them counted against their task: {counted}")
    print(f"took {time.time() - started:.0f}s in {root}")
    if rerun or failed or missing or counted:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
