"""The podman executor, for real: each attempt a container of an image built here, with the
task's limits enforced, no network unless asked, the execution API through a mounted socket.

The image is Conveyor on a base assembled from this machine's Python (no registry is reachable);
the tests' pipelines are not in it: they sit outside the executor's project folder, so their
containers load them from the mounted working folder (the rule for code outside the project).
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Project
from containers import PODMAN, need_podman, runner_image
from conveyor import artifacts
from conveyor.errors import ExecutorError
from conveyor.executors.batch import Spec
from conveyor.executors.podman import PodmanExecutor
from conveyor.executors.port import Lost, Unknown
from conveyor.resources import Resources
from conveyor.runner import Job
from conveyor.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PIPELINE = """
    import os, socket, time
    from pathlib import Path
    from conveyor import output, pipeline, task

    @task(output="out/inside.txt", resources={"memory": 256, "cpu": 1})
    def inside() -> None:
        seen = sorted(k for k in os.environ if k.startswith("CONVEYOR_"))
        token = open(os.environ["CONVEYOR_ATTEMPT_TOKEN_FILE"]).read().strip()
        Path(__import__("conveyor").output().path).write_text(
            f"{os.path.exists('/run/.containerenv')} {bool(token)} {' '.join(seen)}\\n")

    @pipeline
    def contained():
        inside()

    @task(resources={"memory": 64}, retries=0)
    def hog() -> int:
        return len(b"x" * (400 * 2**20))

    @pipeline
    def hungry():
        hog()

    def knock(port: int) -> str:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
            return "reached"
        except OSError as exc:
            return f"no: {exc}"

    @task
    def isolated(port: int) -> str:
        return knock(port)

    @task(network=True)
    def networked(port: int) -> str:
        return knock(port)

    @pipeline
    def calls(port: int):
        isolated(port)
        networked(port)

    @task(timeout=2)
    def sleepy() -> None:
        time.sleep(120)

    @pipeline
    def slow():
        sleepy()

    @task
    def long() -> None:
        open("long-started", "w").close()
        time.sleep(120)

    @pipeline
    def cancellable():
        long()
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    need_podman()
    return runner_image(tmp_path_factory.mktemp("podman-image"))


@pytest.fixture
def pipes(project: Project, image: str, monkeypatch: pytest.MonkeyPatch) -> Project:
    project.write("pipes.py", PIPELINE)
    monkeypatch.setenv("CONVEYOR_PODMAN_IMAGE", image)
    monkeypatch.setenv("CONVEYOR_PODMAN_PROJECT", str(project.root.parent / "elsewhere"))
    return project


def run(project: Project, *args: str) -> tuple[int, str]:
    proc = project.cli("run", *args, "--executor", "podman", timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def containers(project: Project) -> list[dict[str, object]]:
    """Every container a run of ``project`` left (its pool's label)."""
    out = subprocess.run(
        [*PODMAN, "ps", "-a", "--format", "json"], capture_output=True, text=True, check=True
    )
    mine = str(project.root)
    return [c for c in json.loads(out.stdout or "[]") if mine in json.dumps(c.get("Mounts") or [])]


def only_instance(project: Project) -> tuple[object, object, list[object]]:
    store = open_store(project.db)
    (record,) = store.list_runs()
    return record, store.instances(record.id), store.attempts(record.id)


def test_a_pipeline_runs_in_containers_and_its_file_target_lands_on_the_host(
    pipes: Project, image: str
) -> None:
    code, out = run(pipes, "pipes.py:contained")
    assert code == 0, out
    inside, token, seen = (pipes.root / "out" / "inside.txt").read_text().split(" ", 2)
    assert (inside, token) == ("True", "True")  # in a container, with its token from the mounted file
    assert "CONVEYOR_ATTEMPT_TOKEN_FILE" in seen and "CONVEYOR_ATTEMPT_TOKEN " not in seen + " "
    record, _, (attempt,) = only_instance(pipes)
    assert record.image == image  # the run records the image its attempts ran in
    assert attempt.placement and "podman container" in attempt.placement
    assert containers(pipes) == []  # removed once its end was recorded, with its cgroup parent
    prefix = "cv-" + "".join(ch for ch in record.id.lower() if ch.isalnum())
    assert not list(Path("/sys/fs/cgroup").glob(f"*/conveyor/{prefix}*"))


def test_a_memory_hog_is_reported_out_of_memory(pipes: Project) -> None:
    code, out = run(pipes, "pipes.py:hungry")
    assert code == 1, out
    _, _, attempts = only_instance(pipes)
    assert attempts and all("out of memory (limit 64 MiB)" in (a.error or "") for a in attempts), attempts


@contextlib.contextmanager
def listener() -> Iterator[int]:
    """A server on the host's loopback that accepts and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                server.accept()[0].close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


def test_no_network_unless_the_task_asks(pipes: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_PODMAN_NETWORK", "host")  # what a task asking for network gets
    with listener() as port:
        code, out = run(pipes, "pipes.py:calls", "-p", f"port={port}")
    assert code == 0, out
    _, instances, _ = only_instance(pipes)
    results = {i.task: artifacts.load(i.result) for i in instances}
    assert results["networked"] == "reached"
    assert results["isolated"].startswith("no:"), results  # its API socket is its only way out


def test_a_timeout_stops_the_container(pipes: Project) -> None:
    started = time.time()
    code, out = run(pipes, "pipes.py:slow", "--grace", "1")
    assert code == 1, out
    assert "timed out" in out
    assert time.time() - started < 90
    assert not [c for c in containers(pipes) if c.get("State") == "running"]


def test_ctrl_c_stops_the_container(pipes: Project) -> None:
    proc = pipes.popen("run", "pipes.py:cancellable", "--executor", "podman", "--grace", "2")
    deadline = time.time() + 120
    while not (pipes.root / "long-started").exists():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    (running,) = [c for c in containers(pipes) if c.get("State") == "running"]
    env = subprocess.run([*PODMAN, "inspect", "--format", "{{json .Config.Env}}", str(running["Id"])],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "CONVEYOR_ATTEMPT_TOKEN=" not in env and "CONVEYOR_ATTEMPT_TOKEN_FILE=" in env
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, out + err
    record, (inst,), _ = only_instance(pipes)
    assert (record.state, inst.state) == ("cancelled", "cancelled")
    assert not [c for c in containers(pipes) if c.get("State") == "running"]


def test_a_new_owner_adopts_a_running_container_and_reports_its_end(tmp_path: Path, image: str) -> None:
    settings = {"image": image, "project": str(tmp_path / "elsewhere")}
    first = PodmanExecutor(1, str(tmp_path / "logs"), settings=settings)
    job = Job("r1", "inst1", 1, "", str(tmp_path / "art"), {}, "x.py:p", {}, str(tmp_path))
    spec = Spec(
        key=("r1", "inst1", 1), name=f"cv-adopt-{int(time.time() * 1000) % 10**9}",
        command=("python3", "-c", "import time; time.sleep(3)"),
        env={"CONVEYOR_EXECUTION_API": "http://127.0.0.1:9"}, token="secret", resources=Resources(),
        timeout=None, team="", labels={"conveyor.io/pool": first.pool, "conveyor.io/run": "r1",
                                       "conveyor.io/instance": "inst1", "conveyor.io/attempt": "1"},
        network=False, job=job,
    )  # fmt: skip
    first.backend.start(spec)
    first.detach()  # the first owner stops; its container runs on
    second = PodmanExecutor(1, str(tmp_path / "logs"), settings=settings)
    try:
        second.adopt([job])
        assert second.running() == [job]
        reports: list[object] = []
        deadline = time.time() + 60
        while not any(isinstance(r, Unknown | Lost) for r in reports) and time.time() < deadline:
            reports += list(second.poll(1.0))
        ended = [r for r in reports if isinstance(r, Unknown | Lost)]
        assert ended and isinstance(ended[0], Unknown), reports  # exit 0: its runner's word stands
        assert second.running() == []
        deadline = time.time() + 30  # removed once its end was reported (in the background)
        while subprocess.run([*PODMAN, "container", "exists", spec.name], check=False).returncode == 0:
            assert time.time() < deadline, "the ended container was not removed"
            time.sleep(0.5)
    finally:
        second.close()


def test_a_missing_podman_is_one_line_saying_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="apt-get install podman buildah runc"):
        PodmanExecutor(1, str(tmp_path), settings={"podman": "/nonexistent/podman"})


def test_code_in_the_project_comes_from_the_image_and_other_code_from_the_host(
    tmp_path: Path, image: str
) -> None:
    executor = PodmanExecutor(1, str(tmp_path / "logs"), settings={"image": image, "project": str(tmp_path)})
    try:
        rule = executor.backend.target_in_image  # type: ignore[attr-defined]
        assert rule(f"{tmp_path}/flows/sales.py:daily") == "/project/flows/sales.py:daily"
        assert rule("/elsewhere/flows.py:daily") == "/elsewhere/flows.py:daily"  # the mounted folder's
        assert rule("mypackage.flows:daily") == "mypackage.flows:daily"  # the image's packages
    finally:
        executor.close()


def test_a_project_with_no_image_recipe_is_one_line_before_any_run(project: Project, image: str) -> None:
    project.write("pipes.py", PIPELINE)
    proc = project.cli("run", "pipes.py:contained", "--executor", "podman")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "[image] base" in lines[0], lines
