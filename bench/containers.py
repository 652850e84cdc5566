"""Containers: what the podman executor costs per attempt, and what an image build costs.

    .venv/bin/python bench/containers.py [--tasks 6] [--json out.json]

In one run, on this machine's podman (``--runtime runc``), with an image of this checkout's
Conveyor on a base assembled from this machine's Python (tests/containers.py: no registry):

- build, cold: ``conveyor image build --no-cache`` of a one-file project (every step runs:
  Conveyor's wheel, ``pip install``, the project's files);
- build, cached: ``conveyor image build`` again: this commit's image exists, nothing is built;
- podman run loop: ``podman run --rm`` of the runner's imports (``python3 -c "import
  conveyor.executors.command, ..."``), ``--tasks`` times one after another: the floor a
  container per attempt costs here;
- executor: ``conveyor run --executor podman`` of a chain of ``--tasks`` no-op tasks (each waits
  for the one before, so attempts run one at a time, as the loop does), whole process timed;
  per attempt = (its time - the same chain's time on local workers) / tasks.

The report gives each time, per attempt, and the executor's overhead over the bare loop.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from containers import INSTALL, PODMAN, RUN_FLAGS, base_image, git_project  # noqa: E402
from conveyor import images  # noqa: E402

CHAIN = """
from conveyor import pipeline, task

@task
def step(i: int, before: int = 0) -> int:
    return i

@pipeline
def chain(n: int = {n}):
    last = step(0)
    for i in range(1, n):
        last = step(i, last)
"""


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:6])} failed: {done.stdout[-800:]} {done.stderr[-800:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3 if os.environ.get("BENCH_QUICK") else 6)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    missing = [tool for tool in ("podman", "buildah", "runc") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not installed: {INSTALL}")
    n = args.tasks
    base = base_image()
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-containers-") as scratch:
        root = Path(scratch) / "chain"
        toml = f'[project]\npipelines = ["chain.py"]\n\n[image]\nbase = "{base}"\n'
        git_project(root, {"conveyor.toml": toml, "chain.py": textwrap.dedent(CHAIN.format(n=n))})
        conveyor = [sys.executable, "-m", "conveyor"]
        env = {**os.environ, "CONVEYOR_HOME": str(root / ".conveyor"), "COLUMNS": "200"}
        env.pop("CONVEYOR_DB", None)
        cold = timed([*conveyor, "image", "build", "--no-cache"], root, env)
        cached = timed([*conveyor, "image", "build"], root, env)
        image = images.show(root).id
        assert image is not None
        probe = "import conveyor.executors.command, conveyor.executors.remote"
        loop = sum(
            timed([*PODMAN, "run", "--rm", *RUN_FLAGS, "--network", "none", image, "python3", "-c", probe],
                  root, env)
            for _ in range(n)
        )  # fmt: skip
        local = timed([*conveyor, "run", "chain.py:chain", "--new", "--executor", "local"], root, env)
        podman = timed([*conveyor, "run", "chain.py:chain", "--new", "--executor", "podman"], root, env)
    per_attempt = (podman - local) / n
    figures = {
        "tasks": n,
        "build_cold_s": round(cold, 2),
        "build_cached_s": round(cached, 2),
        "podman_run_loop_s": round(loop, 2),
        "podman_run_per_container_s": round(loop / n, 2),
        "local_chain_s": round(local, 2),
        "executor_chain_s": round(podman, 2),
        "executor_per_attempt_s": round(per_attempt, 2),
        "executor_overhead_over_podman_run_s": round(per_attempt - loop / n, 2),
    }
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:<{width}}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
