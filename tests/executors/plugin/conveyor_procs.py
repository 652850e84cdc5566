"""The tests' third-party batch engine: each attempt a process of this machine, held in a folder
of job files as a real engine holds its jobs, so that any process finds them again (adopt).

It is installed the way a third party's adapter is: an entry point in the ``conveyor.executors``
group (this folder's ``.dist-info``, on ``PYTHONPATH``). It runs the runner command a container,
a Kubernetes Job or an HTCondor job runs, with only the environment the ``Spec`` gives it and the
token in a private file, so what ``BatchExecutor`` does is tested end to end without a cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from conveyor.executors.batch import BatchExecutor, Key, Spec, Status, pool_name
from conveyor.executors.command import TOKEN_FILE
from conveyor.resources import Resources


class Processes:
    """Jobs as process groups; ``<folder>/<name>.json`` holds each job's key and pid, and
    ``<name>.rc`` its exit code once it ended (a job killed outright leaves none: 137)."""

    name = "procs"
    image: str | None = None

    def __init__(self, folder: Path, delay: float = 0.0) -> None:
        self.folder = folder
        self.delay = delay  # seconds a job waits "queued" before it starts, as on a busy cluster
        folder.mkdir(parents=True, exist_ok=True)
        self._said: dict[Key, str] = {}
        self._children: dict[Key, subprocess.Popen[bytes]] = {}

    def check(self, resources: Resources) -> str | None:
        return f"no process here has a gpu (asked for {resources.gpu})" if resources.gpu else None

    def start(self, spec: Spec) -> None:
        token = self.folder / f"{spec.name}.token"
        token.touch(mode=0o600)
        token.write_text(spec.token)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder)}
        env |= {**spec.env, TOKEN_FILE: str(token)}
        command = " ".join([sys.executable, *spec.command[1:]])
        rc = self.folder / f"{spec.name}.rc"
        script = f"trap '' TERM; sleep {self.delay}; {command}; echo $? > {rc}"
        with open(self.folder / f"{spec.name}.out", "wb") as out:
            proc = subprocess.Popen(
                ["sh", "-c", script],
                env=env,
                cwd=spec.job.workdir or str(self.folder),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children[spec.key] = proc
        found = {"key": list(spec.key), "name": spec.name, "pid": proc.pid, "at": time.time(), **spec.labels}
        (self.folder / f"{spec.name}.json").write_text(json.dumps(found))

    def _jobs(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.folder.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                yield json.loads(path.read_text())

    def _status(self, job: Mapping[str, Any]) -> Status:
        key: Key = (job["key"][0], job["key"][1], int(job["key"][2]))
        rc = self.folder / f"{job['name']}.rc"
        child = self._children.get(key)
        alive = child.poll() is None if child is not None else _alive(job["pid"])
        if not alive:
            code = int(rc.read_text()) if rc.exists() else 137
            return Status(key, "ended", f"ended as pid {job['pid']}", exit_code=code)
        if time.time() - job["at"] < self.delay:
            return Status(key, "queued", f"queued behind {len(self._children)} jobs")
        return Status(key, "running", f"running as pid {job['pid']}")

    def stop(self, key: Key, grace: float) -> None:
        for job in self._jobs():
            if tuple(job["key"]) == key:
                pid = job["pid"]
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)
                threading.Timer(grace, _kill, (pid,)).start()

    def watch(self, timeout: float) -> Iterator[Status]:
        end = time.time() + timeout
        while True:
            changed = []
            for job in self._jobs():
                status = self._status(job)
                if self._said.get(status.key) != status.where:
                    self._said[status.key] = status.where
                    changed.append(status)
            if changed or time.time() >= end:
                yield from changed
                return
            time.sleep(min(0.05, max(0.0, end - time.time())))

    def find(self, pool: str) -> list[Status]:
        return [self._status(job) for job in self._jobs() if job.get("conveyor.io/pool") == pool]

    def forget(self, key: Key) -> None:
        for job in self._jobs():
            if tuple(job["key"]) == key:
                for suffix in ("json", "rc", "token"):
                    (self.folder / f"{job['name']}.{suffix}").unlink(missing_ok=True)
                child = self._children.pop(key, None)
                if child is not None:
                    child.wait()
        self._said.pop(key, None)

    def close(self) -> None:
        for child in self._children.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class ProcsExecutor(BatchExecutor):
    """``--executor procs``: settings ``folder`` (where the jobs are held) and ``delay``."""

    name: ClassVar[str] = "procs"

    def __init__(
        self, workers: int, log_dir: str, *, recorder: Any = None, settings: Mapping[str, Any] | None = None
    ) -> None:
        s = dict(settings or {})
        folder = Path(s.get("folder") or Path(log_dir).parent / "procs")
        backend = Processes(folder, float(s.get("delay", 0.0)))
        super().__init__(backend, pool=str(s.get("pool") or pool_name(recorder, log_dir)), jobs=workers * 2)
