"""The Ray executor against a real local Ray (one per module, started by a RayExecutor in this
process): attempts of a real submitted run, the runner's writes checked in the store."""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest

from conftest import Project
from conveyor import engine
from conveyor.errors import ExecutorError
from conveyor.executors.port import Launch, Lost, Report
from conveyor.resources import Resources
from conveyor.runner import Job, Outcome
from conveyor.store import Batch, open_store
from conveyor.store.records import AttemptRecord, TransitionRecord

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'conveyor[ray]'")
from conveyor.executors.ray import RayExecutor  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PIPELINE = """
    import os, time
    from conveyor import task, pipeline

    def effect(line):
        with open(os.path.join(os.environ.get("EFFECTS_DIR", "."), "effects.log"), "a") as f:
            f.write(line + "\\n")

    @task
    def ok(i: int) -> int:
        effect(f"ok-{i}")
        return i

    @task
    def boom() -> None:
        raise ValueError("boom: the input is bad")

    @task
    def env() -> str:
        effect("db=" + os.environ.get("CONVEYOR_DB", "-"))
        return os.environ.get("CONVEYOR_DB", "-")

    @task
    def slow(seconds: float) -> None:
        effect(f"slow-start {os.getpid()}")
        with open("slow.pid", "w") as f:
            f.write(str(os.getpid()))
        for _ in range(int(seconds * 20)):
            time.sleep(0.05)
        effect("slow-end")

    @task
    def stubborn() -> None:
        effect("stubborn-start")
        with open("slow.pid", "w") as f:
            f.write(str(os.getpid()))
        while True:
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                effect("stubborn-ignored-the-interrupt")

    @pipeline
    def p(seconds: float = 30.0):
        ok(1)
        ok(2)
        boom()
        env()
        slow(seconds)
        stubborn()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One local Ray for the module, started by a RayExecutor while this process has
    ``CONVEYOR_DB`` set (its workers must not see it); its GCS address for other processes."""
    logs = tmp_path_factory.mktemp("ray-owner")
    with mock.patch.dict(os.environ, {"CONVEYOR_DB": "sqlite:////secret/conveyor.db"}):
        owner = RayExecutor(2, str(logs), settings={"pool": "cv-test-owner"})
        started = time.perf_counter()
        owner.connect()
        print(f"\nlocal Ray started in {time.perf_counter() - started:.1f}s")
    yield str(ray.get_runtime_context().gcs_address)
    owner.close()


def executor(project: Project, **settings: Any) -> RayExecutor:
    pool = settings.pop("pool", f"cv-test-{uuid.uuid4().hex[:8]}")
    rec = SimpleNamespace(url=project.db)
    return RayExecutor(2, str(project.root / "logs"), recorder=rec, settings={"pool": pool, **settings})


def start(project: Project, tasks: list[str], seconds: float = 30.0) -> dict[str, Job]:
    """Submit a run of the test pipeline and mark one attempt of each of ``tasks`` RUNNING, as
    the driver does before it hands attempts to an executor; a Job for each, by label."""
    path = project.write("p.py", PIPELINE)
    store = open_store(project.db)
    run = engine.submit(f"{path}:p", {"seconds": seconds}, store=store)
    epoch = store.acquire(run.id, "test", 600.0)
    now = time.time()
    batch = Batch()
    jobs = {}
    home = project.root / ".conveyor"
    for inst in store.instances(run.id):
        if inst.task not in tasks:
            continue
        log = str(home / "logs" / run.id / f"{inst.id}-1.log")
        batch.attempts_started.append(AttemptRecord(run.id, inst.id, 1, "running", now, None, None, log))
        batch.transitions.append(TransitionRecord(inst.id, "ready", "running", now, "test", 1))
        batch.instances.append({"id": inst.id, "state": "running", "attempts": 1})
        jobs[inst.label] = Job(
            run.id, inst.id, 1, log, str(home / "artifacts" / run.id), {}, run.target, run.params,
            str(project.root),
        )  # fmt: skip
    store.commit(run.id, epoch, batch, lease_until=now + 600.0)
    store.close()
    return jobs


def reports(ex: RayExecutor, n: int, within: float) -> list[Report]:
    got: list[Report] = []
    deadline = time.time() + within
    while len(got) < n:
        assert time.time() < deadline, f"only {got} after {within}s"
        got += ex.poll(0.2)
    return got


def attempt(project: Project, job: Job) -> Any:
    store = open_store(project.db)
    try:
        return next(a for a in store.attempts(job.run_id) if a.instance_id == job.instance)
    finally:
        store.close()


def effects(project: Project) -> list[str]:
    path = project.root / "effects.log"
    return path.read_text().splitlines() if path.exists() else []


def wait_for(path: Path, within: float = 30.0) -> str:
    deadline = time.time() + within
    while not path.exists() or not path.read_text():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def test_attempts_run_on_detached_actors_and_their_runners_record_the_end(
    cluster: str, project: Project
) -> None:
    jobs = start(project, ["ok", "boom", "env"])
    ex = executor(project)
    try:
        now = time.time()
        for job in jobs.values():  # four attempts, two actors: two wait for a free actor
            ex.submit(job, Launch(), now)
        got = {r.instance: r for r in reports(ex, 4, 60) if isinstance(r, Outcome)}
        assert len(got) == 4 and ex.running() == []
    finally:
        ex.close()
    ok, boom, env = jobs["ok(i=1)"], jobs["boom()"], jobs["env()"]
    assert got[ok.instance].status == "succeeded"
    assert attempt(project, ok).state == "succeeded" and attempt(project, ok).heartbeat is not None
    assert got[boom.instance].status == "failed"
    assert "ValueError: boom: the input is bad" in (got[boom.instance].error or "")
    row = attempt(project, boom)
    assert row.state == "failed" and "boom: the input is bad" in (row.error or "")
    # the store's credentials were in this process's environment when the local Ray started
    assert got[env.instance].status == "succeeded"
    assert "db=-" in effects(project)
    assert sorted(e for e in effects(project) if e.startswith("ok-")) == ["ok-1", "ok-2"]


def test_an_actor_killed_under_an_attempt_is_lost_at_once_and_not_run_again(
    cluster: str, project: Project
) -> None:
    jobs = start(project, ["slow", "ok"])
    slow = jobs["slow(seconds=30.0)"]
    ex = executor(project)
    try:
        ex.submit(slow, Launch(), time.time())
        pid = int(wait_for(project.root / "slow.pid"))
        assert ex.actor_pid(slow.instance, 1) == pid  # the task runs in the actor's process
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        (lost,) = reports(ex, 1, 20)
        assert isinstance(lost, Lost) and lost.job == slow and not lost.blameless
        assert lost.reason.startswith("the Ray actor running it died: ActorDiedError: ")
        assert "\n" not in lost.reason
        assert time.time() - killed < 10
        # a new actor in its place runs the next attempt; Ray ran nothing again
        ex.submit(jobs["ok(i=1)"], Launch(), time.time())
        (out,) = reports(ex, 1, 60)
        assert isinstance(out, Outcome) and out.status == "succeeded"
        time.sleep(1)
    finally:
        ex.close()
    assert [e for e in effects(project) if e.startswith("slow")] == [f"slow-start {pid}"]
    assert attempt(project, slow).state == "running"  # its runner had no word: the driver decides


def test_cancel_interrupts_a_running_attempt_and_its_runner_records_it(
    cluster: str, project: Project
) -> None:
    jobs = start(project, ["slow"])
    slow = jobs["slow(seconds=30.0)"]
    ex = executor(project)
    try:
        ex.submit(slow, Launch(), time.time())
        wait_for(project.root / "slow.pid")
        asked = time.time()
        ex.cancel(slow.instance, 1, 10.0, asked)
        (out,) = reports(ex, 1, 10)
        assert isinstance(out, Outcome) and out.status == "cancelled"
        assert time.time() - asked < 5
    finally:
        ex.close()
    assert attempt(project, slow).state == "cancelled"
    assert "slow-end" not in effects(project)


def test_cancel_before_an_attempt_began_runs_nothing(cluster: str, project: Project) -> None:
    jobs = start(project, ["slow", "stubborn", "ok"])
    ex = executor(project)
    try:
        now = time.time()
        for label in ("slow(seconds=30.0)", "stubborn()", "ok(i=1)"):  # two actors: ok waits
            ex.submit(jobs[label], Launch(), now)
        waiting = jobs["ok(i=1)"]
        ex.cancel(waiting.instance, 1, 10.0, now)
        (lost,) = list(ex.poll(0))
        assert isinstance(lost, Lost) and lost.job == waiting and lost.reason == "cancelled before it started"
        # cancelled the moment it went to an actor still starting: it never begins there, or is
        # interrupted (in the task: the runner records it; before the task: the call fails)
        slow = jobs["slow(seconds=30.0)"]
        asked = time.time()
        ex.cancel(slow.instance, 1, 10.0, asked)
        (out,) = reports(ex, 1, 20)  # stubborn() runs on
        stopped = (
            Lost(slow, "cancelled before it started", blameless=True),
            Lost(slow, "cancelled"),
            Lost(slow, "cancelled; killed after the grace period"),  # an actor slow to start, loaded
        )
        assert out in stopped or (isinstance(out, Outcome) and out.status == "cancelled"), out
        assert time.time() - asked < 15
    finally:
        ex.close(kill=True)
    assert not any(e.startswith(("ok-", "slow-end")) for e in effects(project))
    assert attempt(project, slow).state in ("running", "cancelled")


def test_an_attempt_that_ignores_the_cancel_is_killed_after_the_grace_period(
    cluster: str, project: Project
) -> None:
    jobs = start(project, ["stubborn"])
    job = jobs["stubborn()"]
    ex = executor(project)
    try:
        ex.submit(job, Launch(), time.time())
        wait_for(project.root / "slow.pid")
        asked = time.time()
        ex.cancel(job.instance, 1, 1.0, asked)
        assert ex.next_deadline() == pytest.approx(asked + 1.0)
        (lost,) = reports(ex, 1, 10)
        assert isinstance(lost, Lost) and lost.reason == "cancelled; killed after the grace period"
        assert 1.0 <= time.time() - asked < 5
    finally:
        ex.close()
    assert "stubborn-ignored-the-interrupt" in effects(project)


def test_a_timeout_kills_the_attempt(cluster: str, project: Project) -> None:
    jobs = start(project, ["slow", "ok"])
    slow = jobs["slow(seconds=30.0)"]
    ex = executor(project)
    try:
        submitted = time.time()
        ex.submit(slow, Launch(timeout=3.0), submitted)
        assert ex.next_deadline() is None  # it counts from the moment its new actor is up, not before
        (lost,) = reports(ex, 1, 30)
        assert isinstance(lost, Lost) and lost.timed_out and lost.reason == "timed out"
        assert 3.0 <= time.time() - submitted < 20
        # the next attempt goes to a new actor at once, never to the one being killed
        ex.submit(jobs["ok(i=1)"], Launch(), time.time())
        (out,) = reports(ex, 1, 60)
        assert isinstance(out, Outcome) and out.status == "succeeded", out
    finally:
        ex.close()
    assert "slow-end" not in effects(project)
    assert ex.running() == []


def test_check_refuses_what_no_node_can_run_naming_the_biggest(cluster: str, project: Project) -> None:
    ex = executor(project)
    assert ex.check(Resources(cpu=1)) is None
    assert ex.check(Resources(cpu=2, memory=2**20)) is None
    gpu = ex.check(Resources(gpu=1))
    assert gpu is not None and "gpu 1" in gpu and "the biggest node has cpu 2, memory" in gpu
    assert "\n" not in gpu
    cpu = ex.check(Resources(cpu=3))
    assert cpu is not None and "cpu 3" in cpu
    memory = ex.check(Resources(memory=2**50))
    assert memory is not None and "memory 1024TiB" in memory
    custom = ex.check(Resources(custom={"tpu": 1}))
    assert custom is not None and "tpu 1" in custom


OWNER = """
import pickle, sys, time
from types import SimpleNamespace
from conveyor.executors.port import Launch
from conveyor.executors.ray import RayExecutor
job, url, address, logs = pickle.loads(bytes.fromhex(sys.argv[1]))
ex = RayExecutor(1, logs, recorder=SimpleNamespace(url=url),
                 settings={"address": address, "pool": "cv-test-orphans", "auth_mode": "token"})
ex.submit(job, Launch(), time.time())
print("submitted", flush=True)
time.sleep(600)
"""


def test_an_attempt_outlives_the_conveyor_process_that_submitted_it(cluster: str, project: Project) -> None:
    jobs = start(project, ["slow"], seconds=3.0)
    slow = jobs["slow(seconds=3.0)"]
    arg = pickle.dumps((slow, project.db, cluster, str(project.root / "logs"))).hex()
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, arg], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    pid = project.root / "slow.pid"
    deadline = time.time() + 60
    while not pid.exists() and owner.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    owner.kill()  # SIGKILL: no goodbye to Ray
    out, err = owner.communicate(timeout=30)
    assert pid.exists(), f"the attempt never started: {out}{err}"
    deadline = time.time() + 30
    while attempt(project, slow).state == "running":
        assert time.time() < deadline, "the attempt's end never landed"
        time.sleep(0.2)
    assert attempt(project, slow).state == "succeeded"
    assert effects(project)[-1] == "slow-end"
    # a new owner finds the pool's actors by name and lets them go
    left = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    assert any(name.startswith("cv-test-orphans-c1-") for name in left)
    for name in left:
        if name.startswith("cv-test-orphans-"):
            ray.kill(ray.get_actor(name, namespace="conveyor"))


def test_adopt_finds_the_actor_so_cancel_reaches_an_attempt_it_did_not_launch(
    cluster: str, project: Project
) -> None:
    jobs = start(project, ["slow"])
    slow = jobs["slow(seconds=30.0)"]
    first = executor(project, pool="cv-test-adopt")
    first.submit(slow, Launch(), time.time())
    wait_for(project.root / "slow.pid")
    first.detach()  # lets go: the attempt runs on
    second = executor(project, pool="cv-test-adopt")
    try:
        second.adopt([slow])
        second.cancel(slow.instance, 1, 10.0, time.time())
        deadline = time.time() + 10
        while attempt(project, slow).state == "running":
            assert time.time() < deadline, "the adopted attempt was not interrupted"
            time.sleep(0.1)
        assert attempt(project, slow).state == "cancelled"
    finally:
        second.close(kill=True)
        for a in ray.util.list_named_actors(all_namespaces=True):
            if a["name"].startswith("cv-test-adopt-"):
                ray.kill(ray.get_actor(a["name"], namespace="conveyor"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CONNECT = """
import sys, time
from conveyor.errors import ExecutorError
from conveyor.resources import Resources
from conveyor.executors.ray import RayExecutor
t0 = time.time()
try:
    RayExecutor(1, ".", settings={"address": sys.argv[1], "connect_timeout": 1}).check(Resources())
except ExecutorError as exc:
    print(f"{time.time() - t0:.1f}", exc, sep="\\n")
"""


def test_an_unreachable_address_is_one_line_naming_it_within_the_timeout(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-c", CONNECT, address]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    took, message = proc.stdout.strip().split("\n")
    assert float(took) < 3
    assert message.startswith(f"cannot reach the Ray cluster at {address}: ")
    assert "Traceback" not in proc.stderr


def test_an_auth_mode_other_than_the_clusters_is_one_line_within_the_bound(cluster: str) -> None:
    # Ray's own ray.init would loop on InvalidAuthToken warnings for minutes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-c", CONNECT, cluster], capture_output=True, text=True, timeout=60, env=env
    )
    took, message = proc.stdout.strip().split("\n")
    assert float(took) < 6
    assert message.startswith(f"the Ray cluster at {cluster} answers but did not let this process in")
    assert "RAY_AUTH_MODE" in message


def test_without_ray_the_error_names_the_extra() -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["ray"] = None
        from conveyor.executors import load
        from conveyor.errors import ExecutorError
        try:
            load("ray")(1, ".")
        except ExecutorError as exc:
            print(exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'conveyor[ray]'" in proc.stdout
    assert proc.stdout.count("\n") == 1


def test_settings_errors_are_conveyor_errors() -> None:
    with pytest.raises(ExecutorError, match="not a Ray Client address"):
        RayExecutor(1, ".", settings={"address": "ray://127.0.0.1:10001"})._join({})
