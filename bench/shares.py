"""Fair share on a real cluster of schedulers: three teams with weights 1:1:2 saturate a 6-cpu
capacity through three ``conveyor scheduler`` processes on a throwaway PostgreSQL; the store's
quota ledger is sampled every 50 ms. Prints the measured shares and the fairness error (measured
share minus target share, as Armada reports it) while all three had work waiting, and draws the
shares over time to docs/images/fair-shares.png.

    make bench-shares        (or: .venv/bin/python bench/shares.py [--out PATH] [--tasks N])
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from pgserver import server

WORK = """
    import time
    from conveyor import pipeline, task

    @task
    def work(i: int, team: str) -> int:
        time.sleep(0.5)
        return i

    @pipeline
    def load(team: str = "a", n: int = 60):
        for i in range(n):
            work(i, team)
"""
WEIGHTS = {"a": 1.0, "b": 1.0, "c": 2.0}
CAPACITY = 6


def conveyor(cwd: Path, *args: str) -> str:
    env = {**os.environ, "CONVEYOR_HOME": str(cwd / ".conveyor")}
    env.pop("CONVEYOR_DB", None)
    out = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode:
        raise SystemExit(f"conveyor {' '.join(args)} failed:\n{out.stdout}{out.stderr}")
    return out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent.parent / "docs" / "images" / "fair-shares.png")
    )
    parser.add_argument("--tasks", type=int, default=60, help="tasks per team (0.5 s each)")
    args = parser.parse_args()
    from conveyor.store.sql import SqlStore

    with server() as pg, tempfile.TemporaryDirectory(prefix="bench-shares-") as tmp:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres", autocommit=True
        ) as c:
            c.execute("CREATE DATABASE shares")
        url = f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/shares"
        roots = {}
        for team in WEIGHTS:
            root = Path(tmp) / team
            root.mkdir()
            (root / "pipes.py").write_text(textwrap.dedent(WORK))
            (root / "conveyor.toml").write_text(f'[project]\nteam = "{team}"\npipelines = ["pipes.py"]\n')
            roots[team] = root
        admin = roots["a"]
        conveyor(admin, "db", "upgrade", "--db", url)
        for team, weight in WEIGHTS.items():
            conveyor(admin, "teams", "add", team, "--weight", str(weight), "--db", url)
            conveyor(admin, "teams", "quota", team, "--cpu", str(CAPACITY), "--db", url)
        conveyor(admin, "teams", "add", "*", "--db", url)
        conveyor(admin, "teams", "quota", "*", "--cpu", str(CAPACITY), "--db", url)
        for team, root in roots.items():
            conveyor(
                root, "submit", "pipes.py:load", "-p", f"team={team}", "-p", f"n={args.tasks}", "--db", url
            )

        store = SqlStore(url)
        samples: list[tuple[float, dict[str, int]]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                held: dict[str, int] = defaultdict(int)
                for h in store.holdings():
                    held[h.team] += h.amounts.get("cpu", 0)
                samples.append((time.time(), dict(held)))
                time.sleep(0.05)

        env = {**os.environ, "CONVEYOR_HOME": str(admin / ".conveyor")}
        env.pop("CONVEYOR_DB", None)
        command = [
            sys.executable,
            "-m",
            "conveyor",
            "scheduler",
            "--db",
            url,
            "--workers",
            "3",
            "--poll",
            "0.1",
        ]
        scheds = [
            subprocess.Popen(
                [*command, "--name", f"s{k}"],
                cwd=admin,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for k in range(3)
        ]
        started = time.time()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            while True:
                runs = json.loads(conveyor(admin, "runs", "--json", "--db", url))
                if all(r["state"] in ("succeeded", "failed", "cancelled") for r in runs):
                    break
                time.sleep(0.5)
        finally:
            stop.set()
            sampler.join()
            for s in scheds:
                s.send_signal(signal.SIGTERM)
            for s in scheds:
                s.wait(60)
            store.close()
        took = time.time() - started
    report(samples, started, took, args.out)


def report(samples: list[tuple[float, dict[str, int]]], started: float, took: float, out: str) -> None:
    targets = {t: w / sum(WEIGHTS.values()) for t, w in WEIGHTS.items()}
    contended = [s for _, s in samples if all(s.get(t, 0) for t in WEIGHTS) and sum(s.values()) == CAPACITY]
    total = sum(sum(s.values()) for s in contended) or 1
    shares = {t: sum(s.get(t, 0) for s in contended) / total for t in WEIGHTS}
    peak = max((sum(s.values()) for _, s in samples), default=0)
    weights = ":".join(f"{w:g}" for w in WEIGHTS.values())
    print(f"{len(WEIGHTS)} teams, weights {weights}, capacity {CAPACITY} cpu, 3 schedulers on PostgreSQL")
    print(f"{took:.1f} s; {len(samples)} samples, {len(contended)} with all three holding, the cluster full")
    print(f"most cpu held at once: {peak} of {CAPACITY}")
    print(f"{'team':6} {'target':>8} {'measured':>9} {'error':>8}")
    for t in WEIGHTS:
        print(f"{t:6} {targets[t]:8.1%} {shares[t]:9.1%} {shares[t] - targets[t]:+8.1%}")
    errors = [abs(shares[t] - targets[t]) for t in WEIGHTS]
    print(f"fairness error: max {max(errors):.1%}, mean {sum(errors) / len(errors):.1%}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; pip install -e '.[demo]')")
        return
    xs = [at - started for at, _ in samples]
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    ax.stackplot(
        xs,
        *[[s.get(t, 0) for _, s in samples] for t in WEIGHTS],
        labels=[f"team {t} (weight {w:g})" for t, w in WEIGHTS.items()],
        step="post",
        alpha=0.85,
    )
    ax.axhline(CAPACITY, color="black", linewidth=0.8, linestyle="--", label=f"capacity ({CAPACITY} cpu)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("cpu held (quota ledger)")
    ax.set_title("Three teams, weights 1:1:2, three schedulers: cpu held over time")
    ax.set_ylim(0, CAPACITY + 1)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})
    print(f"plot: {out}")


if __name__ == "__main__":
    main()
