"""Conveyor on Dask and on Ray beside the same work through Dask's and Ray's own APIs, on the same
cluster, in one run.

    make bench-engines                 # or: .venv/bin/python bench/engines.py [--engines dask,ray]

Workloads (no-op tasks): 1,000 independent tasks, and a 200-step chain (each step takes the one
before it). One cluster per engine, started here and shared by both sides: a Dask scheduler with
two single-thread worker processes (``dask scheduler`` / ``dask worker``), a Ray head with two cpus
(``ray start --head --block``), both on 127.0.0.1, stopped by their PIDs. Conveyor runs each
pipeline with ``conveyor.run(..., executor=...)`` on an embedded SQLite store in a fresh
directory: every completion is recorded (durable) before the run ends. The engines' own side
submits plain functions and gathers them (Dask: ``client.submit``/``gather``, the chain as
chained futures; Ray: ``f.remote`` and ``ray.get``).

The target: Conveyor's rate at least 0.8x the engine's own (its overhead adds at most 25% to
the engine's per-task cost). Each figure is the median of ``--reps`` runs, interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TARGET = 0.8

PIPELINES = """
from conveyor import pipeline, task

@task
def noop(i: int) -> None:
    return None

@task
def step(i: int, before: int | None = None) -> int:
    return i

@pipeline
def noops(n: int = 1000):
    for i in range(n):
        noop(i)

@pipeline
def chain(n: int = 200):
    last = None
    for i in range(n):
        last = step(i, last)
"""


def noop(i: int) -> None:
    return None


def step(i: int, before: int | None = None) -> int:
    return i


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in reversed(procs):
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def dask_cluster(scratch: Path) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DB"}
    env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
    env["PYTHONPATH"] = str(HERE)  # the engines' own side's functions: this module
    logs = open(scratch / "dask.log", "wb")  # noqa: SIM115
    procs = [
        subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=logs,
            stderr=subprocess.STDOUT,
            env=env,
        )
    ]
    try:
        wait_port(port)
        address = f"tcp://127.0.0.1:{port}"
        worker = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1"]
        worker += ["--host", "127.0.0.1", "--no-dashboard", "--resources", "cpu=1"]
        for _ in range(2):
            procs.append(subprocess.Popen(worker, stdout=logs, stderr=subprocess.STDOUT, env=env))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        _stop(procs)
        logs.close()


@contextlib.contextmanager
def ray_cluster(scratch: Path) -> Iterator[str]:
    port = free_port()
    while 10002 <= port <= 19999:  # Ray's own worker ports
        port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DB"}
    env["PYTHONPATH"] = str(HERE)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    logs = open(scratch / "ray.log", "wb")  # noqa: SIM115
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--port", str(port), "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--disable-usage-stats"],
        stdout=logs, stderr=subprocess.STDOUT, env=env, cwd=scratch,
    )  # fmt: skip
    try:
        wait_port(port)
        time.sleep(2)
        yield f"127.0.0.1:{port}"
    finally:
        _stop([head])
        logs.close()


def native_dask(address: str, n: int, chain: bool) -> float:
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.submit(noop, -1, pure=False).result()  # warm: the function is known to the workers
        started = time.perf_counter()
        if chain:
            fut: Any = None
            for i in range(n):
                fut = client.submit(step, i, fut, pure=False)
            fut.result()
        else:
            client.gather([client.submit(noop, i, pure=False) for i in range(n)])
        return time.perf_counter() - started


def native_ray(address: str, n: int, chain: bool) -> float:
    import ray

    ray.init(address=address, log_to_driver=False, namespace="bench")
    try:
        remote_noop = ray.remote(num_cpus=1, max_retries=0)(noop)
        remote_step = ray.remote(num_cpus=1, max_retries=0)(step)
        ray.get(remote_noop.remote(-1))
        started = time.perf_counter()
        if chain:
            ref: Any = None
            for i in range(n):
                ref = remote_step.remote(i, ref)
            ray.get(ref)
        else:
            ray.get([remote_noop.remote(i) for i in range(n)])
        return time.perf_counter() - started
    finally:
        ray.shutdown()


def conveyor_on(engine: str, address: str, n: int, chain: bool, scratch: Path) -> float:
    """One ``conveyor run`` in a fresh process (its own store, its own connection to the
    cluster); the seconds from the run's start to its recorded end, as the run reports them."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    (folder / "pipes.py").write_text(PIPELINES)
    code = (
        "import json, sys, conveyor\n"
        "from conveyor.executors.choice import choose\n"
        f"choice = choose({engine!r}, address={address!r})\n"
        f"target = 'pipes.py:{'chain' if chain else 'noops'}'\n"
        f"r = conveyor.engine.run(target, {{'n': {n}}}, executor=choice)\n"
        "assert r.state == 'succeeded', r\n"
        "print('BENCH', json.dumps(r.elapsed))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DB"}
    env["CONVEYOR_HOME"] = str(folder / ".conveyor")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, timeout=900
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"conveyor on {engine} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return float(line.split(" ", 1)[1])


def measure(reps: int, fns: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(reps):
        order = list(fns)
        order = order[r % len(order) :] + order[: r % len(order)]
        for key in order:
            out[key].append(fns[key]())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="dask,ray")
    ap.add_argument("--noops", type=int, default=1000)
    ap.add_argument("--chain", type=int, default=200)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    rows: list[tuple[str, str, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-engines-") as tmp:
        scratch = Path(tmp)
        for engine in args.engines.split(","):
            cluster = {"dask": dask_cluster, "ray": ray_cluster}[engine]
            native = {"dask": native_dask, "ray": native_ray}[engine]
            print(f"starting {engine} ...", flush=True)
            with cluster(scratch) as address:
                for label, n, chain in (("no-ops", args.noops, False), ("chain", args.chain, True)):
                    sides: dict[str, Callable[[], float]] = {
                        "engine": lambda f=native, n=n, c=chain: f(address, n, c),
                        "conveyor": lambda e=engine, n=n, c=chain: conveyor_on(e, address, n, c, scratch),
                    }
                    times = measure(args.reps, sides)
                    own, ours = statistics.median(times["engine"]), statistics.median(times["conveyor"])
                    rows.append((engine, f"{n} {label}", own / n * 1e3, ours / n * 1e3, own / ours))
                    print(f"  {label}: {engine} {own:.2f}s, conveyor {ours:.2f}s", flush=True)
    print()
    print("| engine | workload | engine's own API, ms/task | Conveyor on it, ms/task | rate ratio (>= 0.8) |")
    print("| --- | --- | ---: | ---: | ---: |")
    failed = False
    for engine, what, own, ours, ratio in rows:
        ok = "" if ratio >= TARGET else " (below target)"
        failed |= ratio < TARGET
        print(f"| {engine} | {what} | {own:.2f} | {ours:.2f} | {ratio:.2f}x{ok} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
