"""The Dask executor on a real Dask cluster: one LocalCluster for the module, and a `dask
scheduler` + `dask worker` processes of our own for the scheduler's death. Attempts come from a
real submitted run, so the runners' writes to the store are what is checked."""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from engines import DaskCluster, free_port

pytest.importorskip("distributed", reason="the dask extra is not installed")

from conveyor import engine
from conveyor.errors import ExecutorError
from conveyor.executors.dask import DaskExecutor, key_of
from conveyor.executors.port import Launch, Lost, Unknown
from conveyor.resources import Resources
from conveyor.runner import Job, Outcome
from conveyor.store import Batch, open_store
from conveyor.store.records import AttemptRecord, TransitionRecord

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PIPELINE = """
    import os, time
    from conveyor import pipeline, task

    SIDE = {side!r}

    def effect(line):
        with open(SIDE, "a") as f:
            f.write(line + "\\n")

    @task
    def work(tag: str, i: int, delay: float = 0.0) -> int:
        end = time.time() + delay
        while time.time() < end:  # a loop: a cancel lands between two short sleeps
            time.sleep(0.05)
        effect(f"{{tag}}-{{i}}")
        return i

    @task
    def boom(tag: str) -> None:
        raise ValueError(f"boom from the task {{tag}}")

    @task
    def env(tag: str) -> str:
        effect(f"{{tag}}-env CONVEYOR_DB={{'CONVEYOR_DB' in os.environ}} pid={{os.getpid()}}")
        return "ok"

    @task
    def stubborn(tag: str) -> None:
        effect(f"{{tag}}-stubborn-began")
        time.sleep(20)  # one C call: an async exception waits for it
        effect(f"{{tag}}-stubborn-ended")

    @pipeline
    def mixed(tag: str, n: int = 2, delay: float = 0.0):
        for i in range(n):
            work(tag, i, delay)
        boom(tag)
        env(tag)
        stubborn(tag)
"""


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.side = root / "side.txt"
        self.url = f"sqlite:///{root / 'conveyor.db'}"
        (root / "pipeline.py").write_text(textwrap.dedent(PIPELINE.format(side=str(self.side))))

    def run(self, tag: str, n: int = 2, delay: float = 0.0) -> dict[str, Job]:
        """Submit a run; mark attempt 1 of every instance RUNNING, as a driver does before it
        submits; a Job per instance, by label (``work(i=0)``...)."""
        store = open_store(self.url)
        try:
            run = engine.submit(
                f"{self.root / 'pipeline.py'}:mixed", {"tag": tag, "n": n, "delay": delay}, store=store
            )
            epoch = store.acquire(run.id, "test", 600.0)
            now, batch, jobs = time.time(), Batch(), {}
            for inst in store.instances(run.id):
                log = str(self.root / "logs" / run.id / f"{inst.id}-1.log")
                batch.attempts_started.append(
                    AttemptRecord(run.id, inst.id, 1, "running", now, None, None, log)
                )
                batch.transitions.append(TransitionRecord(inst.id, "ready", "running", now, "test", 1))
                batch.instances.append({"id": inst.id, "state": "running", "attempts": 1})
                name = inst.task if inst.task != "work" else f"work{inst.params['i']}"
                jobs[name] = Job(
                    run.id,
                    inst.id,
                    1,
                    log,
                    str(self.root / "artifacts" / run.id),
                    {},
                    run.target,
                    run.params,
                    str(self.root),
                )
            store.commit(run.id, epoch, batch, lease_until=now + 600.0)
            return jobs
        finally:
            store.close()

    def attempt(self, job: Job) -> AttemptRecord:
        store = open_store(self.url)
        try:
            (row,) = store.attempts(job.run_id, job.instance)
            return row
        finally:
            store.close()

    def effects(self, tag: str) -> collections.Counter[str]:
        lines = self.side.read_text().splitlines() if self.side.exists() else []
        return collections.Counter(line.split()[0] for line in lines if line.startswith(f"{tag}-"))


def reports(ex: DaskExecutor, want: int, within: float) -> list[Any]:
    got: list[Any] = []
    end = time.time() + within
    while len(got) < want and time.time() < end:
        got.extend(ex.poll(min(0.5, max(end - time.time(), 0.0))))
    return got


def worker_pid(ex: DaskExecutor, job: Job) -> int:
    client = ex._conn.client  # type: ignore[union-attr]
    (where,) = [addr for addr, keys in client.processing().items() if key_of(job) in keys]
    return int(client.run(os.getpid, workers=[where])[where])


def wait_for(predicate: Any, within: float, what: str) -> None:
    end = time.time() + within
    while not predicate():
        assert time.time() < end, f"waited {within}s for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return Project(tmp_path_factory.mktemp("dask"))


@pytest.fixture(scope="module")
def ex(project: Project) -> Iterator[DaskExecutor]:
    """One LocalCluster of 2 single-thread workers for the module, started while this process
    has the store's URL in CONVEYOR_DB (the workers must not see it)."""
    old = os.environ.get("CONVEYOR_DB")
    os.environ["CONVEYOR_DB"] = project.url
    try:
        executor = DaskExecutor(
            2, str(project.root / "logs"), recorder=SimpleNamespace(url=project.url), settings={"grace": 1.5}
        )
    finally:
        if old is None:
            os.environ.pop("CONVEYOR_DB", None)
        else:
            os.environ["CONVEYOR_DB"] = old
    yield executor
    executor.close(kill=True)


QUICK = Launch(None, Resources())


def test_attempts_succeed_and_their_runners_record_the_ends(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("ok", n=3)
    for name in ("work0", "work1", "work2"):
        ex.submit(jobs[name], QUICK, time.time())
    got = reports(ex, 3, 30)
    assert sorted((o.instance, o.status) for o in got) == sorted(
        (jobs[n].instance, "succeeded") for n in ("work0", "work1", "work2")
    )
    assert all(isinstance(o, Outcome) for o in got)
    for name in ("work0", "work1", "work2"):
        row = project.attempt(jobs[name])
        assert row.state == "succeeded" and row.ended_at is not None and row.heartbeat is not None
    assert project.effects("ok") == {"ok-0": 1, "ok-1": 1, "ok-2": 1}
    assert ex.running() == []


def test_a_failing_task_s_error_arrives(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("bad")
    ex.submit(jobs["boom"], QUICK, time.time())
    (out,) = reports(ex, 1, 30)
    assert isinstance(out, Outcome) and out.status == "failed"
    assert out.error is not None and "ValueError: boom from the task bad" in out.error
    row = project.attempt(jobs["boom"])
    assert row.state == "failed" and "boom from the task bad" in (row.error or "")


def test_a_task_on_dask_cannot_see_the_store_url(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("env")
    ex.submit(jobs["env"], QUICK, time.time())
    (out,) = reports(ex, 1, 30)
    assert isinstance(out, Outcome) and out.status == "succeeded", out
    (line,) = [x for x in project.side.read_text().splitlines() if x.startswith("env-env")]
    assert "CONVEYOR_DB=False" in line
    assert f"pid={os.getpid()}" not in line  # it ran in a worker process, not here


def _explode() -> None:
    raise RuntimeError("this cannot be unpickled here")


class Poison:
    """Unpickles nowhere: what a job looks like to a Dask scheduler or worker without its code."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_explode, ())


def test_an_attempt_dask_cannot_load_is_lost_not_the_task_s_fault(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("poison")
    job = dataclasses.replace(jobs["env"], inputs={"x": Poison()})  # type: ignore[dict-item]
    ex.submit(job, QUICK, time.time())
    (lost,) = reports(ex, 1, 15)
    assert isinstance(lost, Lost) and lost.blameless and not lost.timed_out, lost
    assert lost.reason.startswith("Dask could not run it: RuntimeError: Error during deserialization")
    assert "must be importable on the Dask scheduler and every worker" in lost.reason
    assert "\n" not in lost.reason
    assert project.attempt(job).heartbeat is None  # its runner never began
    assert project.effects("poison") == {}


def test_a_killed_worker_loses_the_attempt_and_dask_does_not_run_it_again(
    ex: DaskExecutor, project: Project
) -> None:
    jobs = project.run("kill", n=1, delay=30)
    job = jobs["work0"]
    ex.submit(job, QUICK, time.time())
    wait_for(lambda: project.attempt(job).heartbeat is not None, 30, "the attempt to begin")
    pid = worker_pid(ex, job)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    (lost,) = reports(ex, 1, 15)
    assert isinstance(lost, Lost) and not lost.blameless and not lost.timed_out
    assert lost.reason.startswith("the Dask worker running it died: tcp://127.0.0.1:")
    assert time.time() - killed < 5
    assert list(ex.poll(3)) == []  # nothing more comes of it
    assert project.effects("kill") == {}  # never re-run, never ended
    assert project.attempt(job).state == "running"  # the driver records the loss, not the runner
    wait_for(lambda: len(ex._workers()) == 2, 30, "the nanny to start a new worker")


def test_cancel_a_running_attempt_and_one_that_never_started(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("cancel", n=3, delay=20)
    for name in ("work0", "work1", "work2"):
        ex.submit(jobs[name], QUICK, time.time())
    wait_for(
        lambda: sum(project.attempt(jobs[n]).heartbeat is not None for n in ("work0", "work1", "work2")) == 2,
        30,
        "two attempts to begin",
    )
    running = [n for n in ("work0", "work1", "work2") if project.attempt(jobs[n]).heartbeat is not None]
    (queued,) = {"work0", "work1", "work2"} - set(running)
    ex.cancel(jobs[queued].instance, 1, 1.5, time.time())
    (lost,) = reports(ex, 1, 5)
    assert isinstance(lost, Lost) and lost.job == jobs[queued]
    assert lost.reason == "cancelled before it started" and lost.blameless
    began = time.time()
    for name in running:
        ex.cancel(jobs[name].instance, 1, 1.5, time.time())
    got = reports(ex, 2, 10)
    assert time.time() - began < 3
    assert sorted((o.instance, o.status) for o in got if isinstance(o, Outcome)) == sorted(
        (jobs[n].instance, "cancelled") for n in running
    )
    for name in running:
        assert project.attempt(jobs[name]).state == "cancelled"  # recorded by the runner
    time.sleep(0.5)
    assert project.effects("cancel") == {}
    assert project.attempt(jobs[queued]).heartbeat is None  # it never began
    assert ex.running() == []


def test_dropped_attempts_run_on_and_record_their_ends(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("drop", n=3, delay=1)
    for name in ("work0", "work1", "work2"):
        ex.submit(jobs[name], QUICK, time.time())
    ex.drop(lambda job: job.instance != jobs["work0"].instance)  # one running, one queued in Dask
    got = reports(ex, 1, 10)
    assert [(o.instance, o.status) for o in got] == [(jobs["work0"].instance, "succeeded")]
    for name in ("work1", "work2"):
        wait_for(lambda name=name: project.attempt(jobs[name]).state == "succeeded", 30, "its end")
    assert project.effects("drop") == {"drop-0": 1, "drop-1": 1, "drop-2": 1}
    assert ex.running() == [] and list(ex.poll(0.5)) == []  # the dropped ones are not reported


def second(ex: DaskExecutor, project: Project) -> DaskExecutor:
    """Another owner's executor on the same Dask scheduler (the module's LocalCluster)."""
    address = ex._conn.cluster.scheduler_address  # type: ignore[union-attr]
    return DaskExecutor(
        1,
        str(project.root / "logs"),
        recorder=SimpleNamespace(url=project.url),
        settings={"address": address, "grace": 1.0},
    )


def test_a_new_owner_adopts_a_running_attempt_and_can_cancel_it(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("adopt", n=1, delay=20)
    job = jobs["work0"]
    ex.submit(job, QUICK, time.time())
    wait_for(lambda: project.attempt(job).heartbeat is not None, 30, "the attempt to begin")
    ex.drop(lambda j: True)  # the old owner lets go: it runs on
    other = second(ex, project)
    try:
        other.adopt([job])
        assert other.running() == []  # adopted attempts are the store's to report
        other.cancel(job.instance, 1, 1.0, time.time())
        wait_for(lambda: project.attempt(job).state == "cancelled", 5, "the runner to record the cancel")
        assert list(other.poll(1.5)) == [] and list(ex.poll(0.1)) == []
        assert project.effects("adopt") == {}
    finally:
        other.close()


def test_detach_lets_go_and_every_attempt_still_runs_once(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("detach", n=3, delay=1)
    other = second(ex, project)
    for name in ("work0", "work1", "work2"):  # 2 workers: one waits in Dask
        other.submit(jobs[name], QUICK, time.time())
    other.detach()  # its client is gone: the attempts are Dask's own now
    assert other.running() == [] and not other.has_room
    for name in ("work0", "work1", "work2"):
        wait_for(lambda name=name: project.attempt(jobs[name]).state == "succeeded", 30, "its end")
    assert project.effects("detach") == {"detach-0": 1, "detach-1": 1, "detach-2": 1}


def test_close_with_kill_stops_what_it_runs(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("close", n=2, delay=20)
    other = second(ex, project)
    for name in ("work0", "work1"):
        other.submit(jobs[name], QUICK, time.time())
    wait_for(
        lambda: all(project.attempt(jobs[n]).heartbeat is not None for n in ("work0", "work1")),
        30,
        "both attempts to begin",
    )
    began = time.time()
    other.close(kill=True)
    assert time.time() - began < 5
    for name in ("work0", "work1"):
        assert project.attempt(jobs[name]).state == "cancelled"  # its runner had time to say so
    time.sleep(0.5)
    assert project.effects("close") == {}
    assert ex.has_room and len(ex._workers()) == 2  # the cluster itself is not another owner's


def test_cancel_a_task_stuck_in_one_call_kills_its_worker_after_the_grace(
    ex: DaskExecutor, project: Project
) -> None:
    jobs = project.run("stuck")
    job = jobs["stubborn"]
    ex.submit(job, QUICK, time.time())
    wait_for(lambda: project.effects("stuck")["stuck-stubborn-began"] == 1, 30, "the task to begin")
    began = time.time()
    ex.cancel(job.instance, 1, 1.0, began)
    assert ex.next_deadline() == pytest.approx(began + 1.0)
    (lost,) = reports(ex, 1, 10)
    assert isinstance(lost, Lost) and lost.reason == "cancelled; killed after the grace period"
    assert 1.0 <= time.time() - began < 4
    assert list(ex.poll(2)) == []
    assert "stuck-stubborn-ended" not in project.effects("stuck")
    wait_for(lambda: len(ex._workers()) == 2, 30, "the nanny to start a new worker")


def test_a_timeout_counts_from_the_start_and_reports_timed_out(ex: DaskExecutor, project: Project) -> None:
    jobs = project.run("slow", n=1, delay=30)
    submitted = time.time()
    ex.submit(jobs["work0"], Launch(1.0, Resources()), submitted)
    got = reports(ex, 1, 15)
    assert len(got) == 1 and isinstance(got[0], Lost), got
    assert got[0].timed_out and got[0].reason == "timed out"
    assert 1.0 <= time.time() - submitted < 10  # a worker new after the last kill imports first
    assert project.effects("slow") == {}
    wait_for(lambda: len(ex._workers()) == 2, 30, "both workers back")


def test_a_restarted_worker_cannot_see_the_store_url_either(
    ex: DaskExecutor, monkeypatch: pytest.MonkeyPatch, project: Project
) -> None:
    monkeypatch.setenv("CONVEYOR_DB", project.url)  # the nanny starts its new worker from here
    client = ex._conn.client  # type: ignore[union-attr]
    victim = sorted(ex._workers())[0]
    client.run(ex._remote.die, workers=[victim], wait=False)
    wait_for(lambda: victim not in ex._workers() and len(ex._workers()) == 2, 30, "a new worker")
    seen = client.run(lambda: "CONVEYOR_DB" in __import__("os").environ)  # pickled by value
    assert len(seen) == 2 and not any(seen.values()), seen


def test_check_refuses_what_no_worker_offers_in_one_line(ex: DaskExecutor) -> None:
    assert ex.check(Resources()) is None
    assert ex.check(Resources(cpu=1, memory=10**6)) is None
    for asked, word in (
        (Resources(cpu=2), "cpu=2"),
        (Resources(gpu=1), "gpu=1"),
        (Resources(memory=10**15), "memory=909.5TiB"),
        (Resources(custom={"fpga": 1}), "fpga=1"),
    ):
        why = ex.check(asked)
        assert why is not None and "\n" not in why, asked
        assert why.startswith("no Dask worker can run a task asking for ") and word in why.split(":")[0]
        assert "the workers offer cpu=1, memory=" in why


def test_an_unreachable_address_is_one_line_within_the_connect_timeout(tmp_path: Path) -> None:
    port = free_port()
    began = time.time()
    with pytest.raises(ExecutorError) as err:
        DaskExecutor(1, str(tmp_path), settings={"address": f"tcp://127.0.0.1:{port}", "connect_timeout": 2})
    assert time.time() - began < 3
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert "dask scheduler" in message


def test_the_executor_is_found_by_its_name() -> None:
    from conveyor.executors import load, names

    assert "dask" in names() and load("dask") is DaskExecutor


def test_without_distributed_the_error_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import conveyor.executors.dask as d\n"  # the module imports without the extra
        "try:\n    d.DaskExecutor(1, '.')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("ExecutorError the dask executor needs 'distributed'"), out
    assert "pip install 'conveyor[dask]'" in out.stdout and out.stdout.count("\n") == 1


# -- the Dask scheduler's death: CLI processes of our own ------------------------------------------
@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    c = DaskCluster(tmp_path)
    try:
        yield c
    finally:
        c.stop()


def _connect(cluster: DaskCluster, project: Project, workers: int) -> DaskExecutor:
    end = time.time() + 30
    while True:
        try:
            ex = DaskExecutor(
                1,
                str(project.root / "logs"),
                recorder=SimpleNamespace(url=project.url),
                settings={"address": cluster.address, "connect_timeout": 2},
            )
            break
        except ExecutorError:
            assert time.time() < end, "the dask scheduler never listened"
            time.sleep(0.2)
    wait_for(lambda: len(ex._workers()) == workers, 60, f"{workers} workers")
    return ex


def test_the_dask_scheduler_dies_mid_run(cluster: DaskCluster, project: Project) -> None:
    sched = cluster.scheduler()
    cluster.worker(), cluster.worker()
    ex = _connect(cluster, project, 2)
    try:
        jobs = project.run("death", n=4, delay=3)
        names = ["work0", "work1", "work2", "work3"]
        for name in names:
            ex.submit(jobs[name], QUICK, time.time())
        wait_for(
            lambda: sum(project.attempt(jobs[n]).heartbeat is not None for n in names) == 2,
            30,
            "two attempts to begin",
        )
        os.kill(sched.pid, signal.SIGKILL)
        got = reports(ex, 4, 10)
        assert sorted(type(r).__name__ for r in got) == ["Unknown"] * 4, got
        assert all(isinstance(r, Unknown) and "Dask scheduler dropped it" in r.reason for r in got)
        assert not ex.has_room and ex.running() == []
        # the running attempts' runners still record their ends (the workers finish them first)
        began = [n for n in names if project.attempt(jobs[n]).heartbeat is not None]
        wait_for(
            lambda: all(project.attempt(jobs[n]).state == "succeeded" for n in began),
            30,
            "the running attempts' ends",
        )
        assert len(began) == 2
        # meanwhile a submission is not lost silently: unknown at once, for the store to decide
        again = [n for n in names if n not in began]
        ex.submit(jobs[again[0]], QUICK, time.time())
        (unknown,) = reports(ex, 1, 5)
        assert isinstance(unknown, Unknown) and unknown.reason.endswith("is unreachable")
        assert ex.check(Resources(gpu=1)) is None  # nothing to compare with while it is away
        # a new scheduler on the same address, new workers (the old ones exited): reconnected
        cluster.scheduler()
        cluster.worker(), cluster.worker()
        end = time.time() + 60
        while not ex.has_room:
            assert time.time() < end, "never reconnected"
            assert list(ex.poll(0.5)) == []
        wait_for(lambda: len(ex._workers()) == 2, 60, "2 new workers")
        # what never began is submitted again (the driver would, after the store said so)
        assert all(project.attempt(jobs[n]).heartbeat is None for n in again)
        for name in again:
            ex.submit(jobs[name], QUICK, time.time())
        got = reports(ex, 2, 30)
        assert sorted((o.instance, o.status) for o in got) == sorted(
            (jobs[n].instance, "succeeded") for n in again
        )
        assert project.effects("death") == {f"death-{i}": 1 for i in range(4)}  # each exactly once
    finally:
        ex.close()
