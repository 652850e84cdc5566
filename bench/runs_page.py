"""How fast the runs page's API answers with many runs stored (issue 5: "stays fast with 10,000").

    .venv/bin/python bench/runs_page.py [--runs 10000] [--db URL]

Seeds a fresh store (a temporary SQLite file unless --db names an empty PostgreSQL database) with
RUNS runs of 5 pipelines (5 task instances each, states spread), serves the REST API with uvicorn
on a loopback port, and times the queries the runs page makes: the first page, a page filtered
by pipeline, by state and by date, and the last page. Prints the median and the 95th percentile
of 30 requests each, over HTTP (the server's work plus a local round trip).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import InstanceRecord, RunRecord, open_store

STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "running")


def seed(url: str, runs: int) -> None:
    store = open_store(url)
    start = time.time() - runs * 60
    for n in range(runs):
        run_id = f"20261101-{n:06d}-bench"
        state = STATES[n % len(STATES)]
        run = RunRecord(
            id=run_id,
            pipeline=f"pipeline_{n % 5}",
            target=f"/srv/p.py:pipeline_{n % 5}",
            params={"day": f"2026-11-{1 + n % 28:02d}", "n": n},
            key=run_id,
            state=state,
            created_at=start + n * 60,
            started_at=start + n * 60 + 1,
            ended_at=None if state == "running" else start + n * 60 + 30,
            total=5,
            partitions=1,
        )
        done = "succeeded" if state != "failed" else "failed"
        instances = [
            InstanceRecord(run_id, f"{n:06d}{i}", f"task_{i}", f"task_{i}(n={n})", {"n": n}, [], state=done)
            for i in range(5)
        ]
        store.create_run(run, instances)
    store.close()


def serve(url: str) -> tuple[uvicorn.Server, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Service(open_store(url))),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed(http: httpx.Client, path: str, params: dict[str, str], times: int = 30) -> tuple[float, float, int]:
    took = []
    total = 0
    for _ in range(times):
        t = time.perf_counter()
        answer = http.get(path, params=params)
        took.append((time.perf_counter() - t) * 1000)
        answer.raise_for_status()
        total = int(answer.json()["total"])
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.95) - 1], total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--db", help="an empty database (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    url = args.db or f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    t = time.perf_counter()
    seed(url, args.runs)
    print(f"seeded {args.runs:,} runs ({args.runs * 5:,} task instances) in {time.perf_counter() - t:.1f}s")
    server, base = serve(url)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 24 * 3600))
    queries = [
        ("first page (50)", {"limit": "50"}),
        ("pipeline filter", {"pipeline": "pipeline_3", "limit": "50"}),
        ("state filter", {"state": "failed", "limit": "50"}),
        ("last 24 h", {"since": since, "limit": "50"}),
        ("last page", {"limit": "50", "offset": str(args.runs - 50)}),
    ]
    print(f"\n{'query':<18} {'median ms':>10} {'p95 ms':>8} {'matching':>9}")
    with httpx.Client(base_url=base, timeout=30) as http:
        for name, params in queries:
            median, p95, total = timed(http, "/api/v1/runs", params)
            print(f"{name:<18} {median:>10.1f} {p95:>8.1f} {total:>9,}")
    server.should_exit = True
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
