"""The engines the executor tests run on, each started for real once per test module: local
worker processes, a Dask scheduler with workers, a Ray head, Spark in local mode. An engine
whose client is missing is skipped with how to install it; in CI (``CI=true``) that fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ENGINES = ["local", "dask", "ray", "spark", "procs", "podman"]
#: The tests' third-party batch engine (``executors/plugin``): found by its entry point.
PLUGIN = Path(__file__).parent / "executors" / "plugin"


@dataclass(frozen=True)
class Engine:
    name: str
    flags: tuple[str, ...]  # what `conveyor run` is given to run on it


def missing(what: str, how: str) -> None:
    """Skip locally, fail in CI: no real-service test is skipped there."""
    message = f"{what} is not available here; {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def start_engine(name: str, scratch: Path) -> Iterator[Engine]:
    if name == "local":
        yield Engine("local", ("--executor", "local"))
        return
    if name == "dask":
        with dask_cluster(scratch) as cluster:
            yield Engine("dask", ("--executor", "dask", "--executor-address", cluster.address))
        return
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            missing("Ray", "install it with: pip install -e '.[test]'")
        with ray_head(scratch) as address:
            yield Engine("ray", ("--executor", "ray", "--executor-address", address))
        return
    if name == "spark":
        try:
            import pyspark  # noqa: F401
        except ImportError:
            missing("PySpark", "install it with: pip install -e '.[test]'")
        if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
            missing("Java", "install it with: apt-get install openjdk-17-jre-headless")
        yield Engine("spark", ("--executor", "spark"))
        return
    if name == "podman":
        with podman_settings(scratch):
            yield Engine("podman", ("--executor", "podman"))
        return
    if name == "procs":
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGIN), before]))
        try:
            yield Engine("procs", ("--executor", "procs"))
        finally:
            if before is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = before
        return
    raise ValueError(f"no such engine in the tests: {name}")


@contextlib.contextmanager
def podman_settings(scratch: Path) -> Iterator[None]:
    """Containers of an image with this checkout's Conveyor (tests/containers.py); the tests'
    pipelines are outside its project, so containers load them from the mounted working folder."""
    from containers import INSTALL, runner_image

    if not all(shutil.which(tool) for tool in ("podman", "buildah", "runc")):
        missing("podman", f"install it with: {INSTALL}")
    settings = {"CONVEYOR_PODMAN_IMAGE": runner_image(scratch), "CONVEYOR_PODMAN_PROJECT": str(scratch)}
    old = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def dask_cluster(scratch: Path, workers: int = 2) -> Iterator[DaskCluster]:
    """A `dask scheduler` and ``workers`` single-thread `dask worker`s, up and connected."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        missing("Dask", "install it with: pip install -e '.[test]'")
    cluster = DaskCluster(scratch)
    try:
        cluster.scheduler()
        wait_port(cluster.port)
        for _ in range(workers):
            cluster.worker()
        cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def ray_head(scratch: Path, cpus: int = 2) -> Iterator[str]:
    """A Ray head of our own (``ray start --head --block``, never ``ray stop``: that stops every
    Ray of the machine), on 127.0.0.1 without token authentication, stopped by its PID."""
    port = free_port()
    while 10002 <= port <= 19999:  # Ray's own worker ports
        port = free_port()
    old = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # the head, and every process the tests start
    env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DB"}
    with open(scratch / "ray.log", "ab") as log:
        head = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port", str(port),
             "--num-cpus", str(cpus), "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
             "--disable-usage-stats"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=scratch, start_new_session=True,
        )  # fmt: skip
    try:
        wait_port(port)
        yield f"127.0.0.1:{port}"
    finally:
        if head.poll() is None:
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
        if old is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DaskCluster:
    """A Dask scheduler and workers as CLI processes of our own on 127.0.0.1, stopped by PID."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {k: v for k, v in os.environ.items() if k != "CONVEYOR_DB"}
        self.env["DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES"] = "0"
        self.env["DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION"] = "1.0"

    def _start(self, *args: str) -> subprocess.Popen[bytes]:
        with open(self.root / "cluster.log", "ab") as log:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "dask"), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def scheduler(self) -> subprocess.Popen[bytes]:
        return self._start("scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard")

    def worker(self) -> subprocess.Popen[bytes]:
        return self._start(
            "worker",
            self.address,
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            "--resources",
            "cpu=1",
            "--death-timeout",
            "60",
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def wait_for_workers(self, n: int, timeout: float = 60.0) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=timeout)
