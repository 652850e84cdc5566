"""Conveyor's several-scheduler mode (scenario f): PostgreSQL and schedulers, as a user runs them.

    BENCH_PG=127.0.0.1:PORT .venv/bin/python bench/peers/run_ha.py {noop,sleep,spin,takeover} N VARIANT

Run in a fresh directory that is also ``CONVEYOR_HOME``, with ``BENCH_PG`` the address of a
PostgreSQL server (the harness starts one: bench/pgserver.py); each measurement makes its own
database there and drops it at the end. Every Conveyor here is its real CLI in its own process.

The pipeline is ``components`` (bench/pipelines.py): K independent components of N // K tasks
and a join each, so N + K tasks, which ``conveyor submit`` splits into partitions.

- noop: N no-ops in K = 8 components, the default partition size (512: for N = 2,000, four
  partitions of two components). Variants: ``sqlite``, the embedded default (``conveyor run``
  with the SQLite store, default workers); ``1``, PostgreSQL with one scheduler (default
  workers); ``1-async``, the same with the database's ``synchronous_commit=off`` (a commit does
  not wait for the WAL's fsync, as SQLite's ``synchronous=NORMAL`` does not); ``run``, the
  embedded driver on PostgreSQL (``conveyor run --db postgresql://...``): the store's share of
  the difference, without partitions, leases and the workers' own writes.
- sleep, spin: K = 8 components, partition size N // K + 1 (8 partitions), each task sleeping
  (a wait: no CPU) or busy-looping (CPU) 20 ms. Variants ``1`` and ``2``: that many schedulers
  with ``--workers 1`` each, so that two schedulers' workers together fill the 2 cores (which
  they share with PostgreSQL and the schedulers themselves).
- takeover: N tasks sleeping 50 ms in one partition. Scheduler s1 claims it; once s1 has
  started 3 attempts, s2 starts, idle (a standby); 0.5-1 s (at random, against s2's polling
  phase) after s2 registered, s1 is SIGKILLed (the scheduler process, not its workers).
  ``seconds`` runs from the kill to the ``started_at`` of the first attempt started after it
  (only the new owner can start one), both ``time.time()`` on this machine; ``claim_seconds``
  to the partition's ``taken_at``. Defaults: ``--lease 2.0`` (renewed with each of the
  owner's commits) and ``--poll 0.5``, so the claim is due 2-2.5 s after the kill.

PostgreSQL's schedulers are daemons, as deployed: started first and registered (idle, polling
every 0.5 s), then ``conveyor submit``; when the run has ended they are stopped (SIGTERM).

What is timed (noop, sleep, spin): the run in the store, from its ``started_at`` (the embedded
driver starts; the first partition is claimed) to its ``ended_at`` (the driver finishes; the
last partition ends). Not timed: imports, building the graph and recording the run
(``conveyor run`` before its driver starts; ``conveyor submit``), a scheduler's wait for its
next poll. ``wall_seconds_e2e`` is the whole from the outside: the ``conveyor run`` process, or
from starting ``conveyor submit`` to seeing the run ended in the store (polled every 50 ms).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import MARK, parse_args

from conveyor.store import open_store

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines.py"
TARGET = f"{PIPELINES}:components"
K = 8  # components
WORK = 0.02  # seconds of work per task in sleep and spin
TAKEOVER_WORK = 0.05
ENDED = ("succeeded", "failed", "cancelled")


def emit(seconds: float, tasks: int, **extra: Any) -> None:
    """One measurement, as ``common.emit`` but without this process's memory: it only orchestrates."""
    print(MARK + json.dumps({"seconds": seconds, "tasks": tasks, **extra}), flush=True)


def cli(log: str, *args: str) -> subprocess.Popen[str]:
    """A Conveyor CLI process; its stderr in ./LOG.log."""
    with open(f"{log}.log", "w") as err:
        cmd = [sys.executable, "-m", "conveyor", *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)


def finish(proc: subprocess.Popen[str], log: str) -> str:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        tail = Path(f"{log}.log").read_text().strip().splitlines()[-3:]
        raise SystemExit(f"conveyor {log} failed (exit {proc.returncode}): {' | '.join(tail)}")
    return out


def wait_for(what: str, check: Callable[[], Any], limit: float = 120.0, every: float = 0.02) -> Any:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if got := check():
            return got
        time.sleep(every)
    raise SystemExit(f"run_ha: timed out waiting for {what}")


class Database:
    """A fresh database on the benchmark's server, dropped at the end."""

    def __init__(self, address: str, synchronous_commit: bool = True) -> None:
        self.host, self.port = address.rsplit(":", 1)
        self.name = "bench_" + secrets.token_hex(4)
        self.admin(f'CREATE DATABASE "{self.name}"')
        if not synchronous_commit:
            self.admin(f'ALTER DATABASE "{self.name}" SET synchronous_commit = off')
        self.url = f"postgresql+psycopg://postgres@{address}/{self.name}"

    def admin(self, sql: str) -> None:
        import psycopg

        dsn = f"host={self.host} port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.encode())

    def drop(self) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Schedulers:
    """Scheduler daemons s1, s2, ... on one database; stopped, with their workers, at the end."""

    def __init__(self, db: str, *options: str) -> None:
        self.db, self.options = db, options
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.pids: set[int] = set()  # their workers too: each in a process group of its own
        self.store = open_store(db)

    def start(self, name: str) -> subprocess.Popen[str]:
        self.procs[name] = p = cli(name, "scheduler", "--db", self.db, "--name", name, *self.options)
        wait_for(f"{name} to register", lambda: any(r.name == name for r, _ in self.store.schedulers()))
        return p

    def note_workers(self) -> None:
        for p in self.procs.values():
            self.pids |= children(p.pid)

    def stop(self) -> None:
        self.note_workers()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # hands its partition over; idle, it just exits
        for name, p in self.procs.items():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                print(f"run_ha: {name} did not stop in 10 s; killed", file=sys.stderr)
                p.kill()
                p.wait()
        end = time.monotonic() + 5  # workers finish the attempt they run, then exit
        while (alive := [pid for pid in self.pids if exists(pid)]) and time.monotonic() < end:
            time.sleep(0.05)
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        self.store.close()


def children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def submit(db: str, n: int, k: int, *params: str, size: int | None = None) -> str:
    extra = ["--partition-size", str(size)] if size else []
    args = ["submit", TARGET, "-p", f"n={n}", "-p", f"k={k}", *params, *extra, "--db", db]
    return finish(cli("submit", *args), "submit").strip().splitlines()[-1]


def report(db: str, t0: float, run_id: str | None = None, e2e: float | None = None) -> None:
    """Emit the run's driven time in the store (started_at to ended_at) and its task count."""
    store = open_store(db)
    try:
        run = store.get_run(run_id) if run_id else store.list_runs(limit=1)[0]
        if run.state != "succeeded" or run.started_at is None or run.ended_at is None:
            raise SystemExit(f"the run ended {run.state}: {run.error}")
        e2e = e2e if e2e is not None else time.perf_counter() - t0
        parts = len(store.partitions(run.id))
        seconds = run.ended_at - run.started_at
        emit(seconds, run.total, wall_seconds_e2e=e2e, partitions=parts, counts=run.counts)
    finally:
        store.close()


def throughput(scenario: str, n: int, variant: str, address: str) -> None:
    params = [] if scenario == "noop" else ["-p", f"{scenario}={WORK}"]
    db = None if variant == "sqlite" else Database(address, synchronous_commit=variant != "1-async")
    if db is None or variant == "run":
        url = db.url if db else f"sqlite:///{os.getcwd()}/conveyor.db"
        try:
            t0 = time.perf_counter()
            finish(cli("run", "run", TARGET, "-p", f"n={n}", "-p", f"k={K}", *params, "--db", url), "run")
            report(url, t0)
        finally:
            if db:
                db.drop()
        return
    try:
        scheds = Schedulers(db.url, *(["--workers", "1"] if scenario != "noop" else []))
        try:
            for i in range(int(variant.split("-")[0])):
                scheds.start(f"s{i + 1}")
            t0 = time.perf_counter()
            run_id = submit(db.url, n, K, *params, size=None if scenario == "noop" else n // K + 1)
            wait_for("the run to end", lambda: scheds.store.get_run(run_id).state in ENDED, 600, 0.05)
            e2e = time.perf_counter() - t0
        finally:
            scheds.stop()
        report(db.url, t0, run_id, e2e)
    finally:
        db.drop()


def takeover(n: int, address: str) -> None:
    db = Database(address)
    try:
        scheds = Schedulers(db.url)
        store = scheds.store
        try:
            run_id = submit(db.url, n, 1, "-p", f"sleep={TAKEOVER_WORK}")
            s1 = scheds.start("s1")
            wait_for("s1 to start 3 attempts", lambda: len(store.attempts(run_id)) >= 3)
            scheds.start("s2")
            time.sleep(random.uniform(0.5, 1.0))  # s2 polls every 0.5 s: kill at a random phase of it
            scheds.note_workers()
            killed = time.time()
            s1.kill()
            later = wait_for(
                "an attempt started after the kill",
                lambda: [a for a in store.attempts(run_id) if a.started_at > killed],
            )
            part = store.partitions(run_id)[0]
            if part.owner != "s2" or part.taken_from != "s1" or part.taken_at is None:
                raise SystemExit(f"takeover: the partition is {part}")
            first = min(a.started_at for a in later)
            emit(first - killed, 1, claim_seconds=part.taken_at - killed, lease=2.0, poll=0.5)
        finally:
            scheds.stop()
    finally:
        db.drop()


def main() -> None:
    args = parse_args(("1", "2", "1-async", "run", "sqlite"), scenarios=("noop", "sleep", "spin", "takeover"))
    address = os.environ.get("BENCH_PG", "")
    if not address and args.variant != "sqlite":
        raise SystemExit("run_ha: set BENCH_PG=host:port of a PostgreSQL server (the harness starts one)")
    if args.scenario == "takeover":
        takeover(args.n, address)
    else:
        throughput(args.scenario, args.n, args.variant, address)


if __name__ == "__main__":
    main()
