"""High availability on an engine, for real: three Conveyor schedulers on a real PostgreSQL drive
a run whose attempts execute on a real Dask cluster (a `dask scheduler` and workers, processes of
our own), their runners reporting through a `conveyor server`'s execution API (they never see
the store's URL). The scheduler owning the run is SIGKILLed mid-run: a survivor takes the
partition over and adopts the attempts still running on Dask instead of launching them again.
Every task's side effect appears once, and no completed task runs again.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Project
from engines import DaskCluster, dask_cluster, free_port, wait_port
from test_ha import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(name="dask_cluster")
def started_dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path) as cluster:
        yield cluster


@pytest.fixture
def api(project: Project, postgres: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """The cluster of schedulers (from test_ha), and a `conveyor server` without a scheduler of
    its own serving the execution API over the same store, named to the schedulers."""
    cluster = Cluster(project, postgres)
    port = free_port()
    with open(project.root / "server.log", "ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server", "--no-scheduler", "--db", cluster.url,
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=project.root, env=project.env(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_port(port)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        monkeypatch.setenv("CONVEYOR_EXECUTION_API", f"http://127.0.0.1:{port}")
        yield cluster
    finally:
        cluster.stop_all()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_sigkill_of_the_owning_scheduler_mid_run_on_dask(api: Cluster, dask_cluster: DaskCluster) -> None:
    cluster = api
    run_id = cluster.submit(n=12, groups=1, delay=2.0, partition_size=13)
    for k in (1, 2, 3):
        cluster.scheduler(f"s{k}", "--executor", "dask", "--executor-address", dask_cluster.address)
    cluster.wait_for_lines(2)  # attempts have ended on Dask; others run there now
    victim, number, epoch = cluster.busy_partition(at_least=5)
    # began on Dask (their runners beat); others handed over wait in Dask's queue and are dropped
    # with the dead scheduler's client: never started, they are lost through no fault of theirs
    began = cluster.wait_for(
        "attempts executing on Dask",
        lambda: [a for a in cluster.store.attempts(run_id) if a.state == "running" and a.heartbeat],
    )
    cluster.procs[victim].kill()
    assert cluster.procs[victim].wait(timeout=10) == -signal.SIGKILL

    assert cluster.wait_for_end() == "succeeded", cluster.logs()
    repeats = cluster.check_every_task_ran_and_none_ran_again()
    assert repeats == [], f"side effects repeated: {repeats}\n{cluster.logs()}"
    part = cluster.partition(number)
    assert part.state == "done" and part.epoch > epoch and part.taken_from == victim, part
    # the attempts running on Dask when their scheduler died were adopted, not launched again
    after = {(a.instance_id, a.number): a for a in cluster.store.attempts(run_id)}
    adopted = [after[a.instance_id, a.number] for a in began]
    assert adopted and all(a.state == "succeeded" for a in adopted), [(a.number, a.state) for a in adopted]
    relaunched = [a for a in after.values() if a.number > 1]
    assert all(after[a.instance_id, 1].state == "lost" for a in relaunched), relaunched
    survivors = [name for name in cluster.procs if name != victim]
    assert any(f"took over from {victim}" in cluster.log(s) for s in survivors), cluster.logs()
    worker_logs = (dask_cluster.root / "cluster.log").read_text(errors="replace")
    assert cluster.url not in worker_logs  # the store's URL never reached the engine


ON_DASK = """
    from conveyor import pipeline, task

    @task
    def where() -> str:
        from distributed import get_worker

        return get_worker().address

    @pipeline
    def placed():
        where()
"""


def test_a_run_submitted_to_dask_runs_there(
    project: Project, dask_cluster: DaskCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("placed.py", ON_DASK)
    refused = project.cli("submit", "placed.py:placed", "--executor", "nope")
    assert refused.returncode == 2 and "unknown executor 'nope'" in refused.stderr + refused.stdout
    run_id = project.cli("submit", "placed.py:placed", "--executor", "dask", check=True).stdout.strip()
    monkeypatch.setenv("CONVEYOR_DASK_ADDRESS", dask_cluster.address)  # the scheduler's setting
    project.cli("scheduler", "--until-idle", "--poll", "0.1", check=True, timeout=120)
    shown = project.cli("show", run_id, "--json", check=True).stdout
    from conveyor import artifacts
    from conveyor.store import open_store

    store = open_store(project.db)
    assert store.get_run(run_id).state == "succeeded", shown
    (inst,) = store.instances(run_id)
    assert str(artifacts.load(inst.result)).startswith("tcp://127.0.0.1:")


RESULTS = """
    from conveyor import pipeline, task

    @task
    def numbers(n: int) -> list:
        return list(range(n))

    @task
    def total(values: list) -> int:
        return sum(values)

    @pipeline
    def summed():
        total(numbers(10))
"""


def test_results_go_to_the_configured_storage(project: Project, s3: str, dask_cluster: DaskCluster) -> None:
    """`[executor] storage`: runners on the engine save results there (an object store both the
    engine and Conveyor reach), and the downstream task reads its input from there."""
    from s3 import keys, new_bucket

    bucket = new_bucket()
    project.write("summed.py", RESULTS)
    project.write("conveyor.toml", f'[executor]\ndefault = "dask"\nstorage = "s3://{bucket}/conveyor"\n')
    project.cli("run", "summed.py:summed", "--executor-address", dask_cluster.address, check=True)
    from conveyor import artifacts
    from conveyor.store import open_store

    store = open_store(project.db)
    (run,) = store.list_runs()
    results = {i.task: i.result for i in store.instances(run.id)}
    assert all(str(ref).startswith(f"s3://{bucket}/conveyor/artifacts/{run.id}/") for ref in results.values())
    assert artifacts.load(results["total"]) == 45
    assert len(keys(bucket)) == 2


def test_two_runs_on_dask_sharing_a_task_execute_it_once(project: Project, dask_cluster: DaskCluster) -> None:
    """Two `conveyor run`s whose pipelines share task instances, both on the same Dask cluster:
    one executes each shared instance, the other's runner waits for it through the execution API
    and takes its outcome."""
    from test_once import PIPELINES, effects, start_together, twice

    project.write("pipes.py", PIPELINES)
    flags = ["--executor", "dask", "--executor-address", dask_cluster.address]
    done = start_together(project, [["run", "pipes.py:daily", *flags], ["run", "pipes.py:charts", *flags]])
    for proc in done:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = effects(project)
    assert [counts[f"fetch-2026-11-0{d}"] for d in (1, 2, 3)] == [1, 1, 1], counts
    assert not twice(project) and sum(counts.values()) == 9
    runs = json.loads(project.cli("runs", "--json", check=True).stdout)
    shown = [project.cli("show", r["id"], check=True).stdout for r in runs]
    assert any("waited for run" in text for text in shown), shown
