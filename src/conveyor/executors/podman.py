"""The podman executor: each attempt a container of the project's image, with enforced limits.

    conveyor run pipeline.py:daily --executor podman

Each attempt runs ``python3 -m conveyor.executors.command`` in a detached container (``podman
run -d``, no daemon; ``--init``, so the runner is not the container's PID 1, which ignores
signals it has no handler for: a task that kills itself dies, a stop reaches it), named for
the attempt and labelled with its pool, run, instance and attempt, so a new owner finds it
after a takeover and ``podman ps --filter label=...`` shows whose it is. The task's resources
are the container's limits: ``--cpus``, and ``--memory`` with ``--memory-swap`` equal to it (no
swap past the limit: a task that allocates past its memory is killed, and reported "out of
memory", not "failed").

Code and files. The pipeline's code comes from the image (``conveyor image build``: the project
at a commit), never from the host: a job's target under the project's folder is rewritten to
the image's copy (``/project/<the same relative path>``). Data does come from the host: the
run's working folder is mounted at the same path, read-write, so file targets such as
``demo-output/`` land where a local run puts them, and so is the folder of the run's artifacts.

Network. A container gets none (``--network none``) unless its task asks (``@task(network=True)``:
then ``[executor.podman] network``, podman's default bridge unless set). The execution API is
reached either way through a Unix socket bind-mounted into the container
(``conveyor.executors.relay``): the one door out. The attempt's token is a 0600 file mounted
read-only (``CONVEYOR_ATTEMPT_TOKEN_FILE``), never on the command line or in ``podman inspect``.

Out of memory. On cgroup v1 ``podman inspect``'s ``OOMKilled`` says false even for a container
the kernel killed at its limit, and the container's cgroup is gone once it exits. So each
container gets a cgroup parent of its own (``/conveyor/<name>``), which outlives it: exit 137
with the parent's peak memory at the limit is out of memory (on cgroup v2, the parent's
``memory.events`` counts the kill). ``forget`` removes the container and that parent.

Settings (``[executor.podman]`` or ``CONVEYOR_PODMAN_<SETTING>``): ``image`` (default: the
project's image at its current commit, built if missing), ``project`` (the project's folder:
default, the one whose conveyor.toml is here or above), ``code`` (the project's folder in the
image, default ``/project``), ``podman`` (its path), ``ulimits`` (``nofile=N:N nproc=N:N``),
``args`` (more ``podman run`` arguments), ``network`` (what a task asking for network gets:
``bridge``, ``host``, ...), ``jobs`` (containers at once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from conveyor.errors import ExecutorError
from conveyor.executors.batch import LABEL, BatchExecutor, Key, Spec, Status, key_of, pool_name, settings_of
from conveyor.executors.command import API, TOKEN_FILE, encode_job
from conveyor.executors.relay import SOCKET, Relay
from conveyor.images import INSTALL
from conveyor.resources import Resources

SETTINGS = ("image", "project", "code", "podman", "ulimits", "args", "network", "jobs")
#: Where a container finds the API's socket folder and its token.
API_DIR = "/run/conveyor/api"
TOKEN_PATH = "/run/conveyor/token"
MEMORY_LABEL = f"{LABEL}/memory"
_POLL = 0.5  # seconds between looks at the pool's containers while waiting
_CLEANUP = 10.0  # seconds a container's removal may take at the most
_CGROUP = Path("/sys/fs/cgroup")
_ENDED = frozenset({"exited", "stopped", "dead"})


def _words(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value.replace(",", " "))
    return [str(v) for v in value]


def _default_ulimits() -> list[str]:
    """The launching process's open-file limit (a container may not exceed it) and a bounded
    process count (podman needs both set explicitly on machines like this one)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    files = min(soft if soft > 0 else 4096, 65536)
    return [f"nofile={files}:{files}", "nproc=4096:4096"]


class PodmanBackend:
    """Containers of one pool on this machine's podman (see the module doc)."""

    name = "podman"

    def __init__(self, settings: Mapping[str, Any], log_dir: str) -> None:
        found = shutil.which(str(settings.get("podman") or "podman"))
        if found is None:
            raise ExecutorError(f"the podman executor needs podman, which is not installed: {INSTALL}")
        self.podman = [found, "--runtime", "runc"]
        self.log_dir = Path(log_dir)
        self.ulimits = _words(settings.get("ulimits")) or _default_ulimits()
        self.args = _words(settings.get("args"))
        self.network = str(settings.get("network") or "bridge")
        self.code = str(settings.get("code") or "/project")
        root = settings.get("project")
        self.project = Path(root).resolve() if root else _project_root()
        info = self._json(["info", "--format", "json"])
        host = info.get("host", {}) if isinstance(info, dict) else {}
        self.cgroups = str(host.get("cgroupVersion", "")), str(host.get("cgroupManager", ""))
        self.run_image = self._image(settings.get("image"))
        self.image: str | None = self.run_image
        self._secrets = tempfile.mkdtemp(prefix="conveyor-tokens-")
        self._relays: dict[Key, Relay] = {}
        self._names: dict[Key, str] = {}
        self._limits: dict[Key, int] = {}
        self._seen: dict[Key, tuple[str, str]] = {}
        self._pool: str | None = None
        self._removing: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- podman ---------------------------------------------------------------------------------
    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.podman, *args], capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ExecutorError(f"podman {args[0]} failed: {last}")
        return done

    def _json(self, args: list[str]) -> Any:
        out = self._run(args).stdout
        try:
            return json.loads(out or "null")
        except ValueError:
            raise ExecutorError(f"podman {args[0]} answered no JSON: {out[:200]!r}") from None

    def _image(self, wanted: Any) -> str:
        """The image id attempts run in: the one named, or the project's (built if missing)."""
        from conveyor import images

        if wanted:
            found = self._run(["image", "inspect", "--format", "{{.Id}}", str(wanted)], check=False)
            if found.returncode != 0:
                raise ExecutorError(
                    f"[executor.podman] image {wanted!r} is not in podman's storage: build it "
                    "(conveyor image build) or pull it (podman pull)"
                )
            return str(images.full_id(found.stdout))

        current = images.show(self.project)
        if current.id is not None:
            return current.id
        print(f"conveyor: building the project's image {current.tag} ...", file=sys.stderr, flush=True)
        built = images.build(self.project)
        assert built.id is not None
        return built.id

    # -- the Backend protocol -------------------------------------------------------------------
    def check(self, resources: Resources) -> str | None:
        if resources.gpu:
            return f"it asks for {resources.gpu} gpu; the podman executor passes no GPUs to containers"
        cpus = os.cpu_count() or 1
        if resources.cpu > cpus:
            return f"it asks for {resources.cpu} cpus; this machine has {cpus}"
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        if resources.memory > total:
            return f"it asks for {resources.memory} MiB of memory; this machine has {total} MiB"
        return None

    def start(self, spec: Spec) -> None:
        self._pool = spec.labels.get(f"{LABEL}/pool", self._pool)
        token = Path(self._secrets) / spec.name
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(spec.token)
        relay = self._relay(spec.key, spec.env[API])
        job = dataclasses.replace(spec.job, target=self.target_in_image(spec.job.target))
        env = {**spec.env, "CONVEYOR_JOB": encode_job(job), TOKEN_FILE: TOKEN_PATH,
               "CONVEYOR_EXECUTION_SOCKET": f"{API_DIR}/{SOCKET}"}  # fmt: skip
        labels = {**spec.labels, MEMORY_LABEL: str(spec.resources.memory)}
        args = ["run", "-d", "--init", "--name", spec.name, "--cgroupns=private"]
        for k, v in sorted(labels.items()):
            args += ["--label", f"{k}={v}"]
        for limit in self.ulimits:
            args += ["--ulimit", limit]
        if self.cgroups[1] == "cgroupfs":
            args += ["--cgroup-parent", f"/conveyor/{spec.name}"]
        args += ["--cpus", str(spec.resources.cpu)]
        if spec.resources.memory:
            args += ["--memory", f"{spec.resources.memory}m", "--memory-swap", f"{spec.resources.memory}m"]
        args += ["--network", self.network if spec.network else "none"]
        args += ["-v", f"{token}:{TOKEN_PATH}:ro", "-v", f"{relay.folder}:{API_DIR}:ro"]
        for folder in self._mounts(job):
            args += ["-v", f"{folder}:{folder}:rw"]
        for k, v in sorted(env.items()):
            args += ["-e", f"{k}={v}"]
        args += [*self.args, self.run_image, *spec.command]
        with self._lock:
            self._names[spec.key] = spec.name
            self._limits[spec.key] = spec.resources.memory
        done = self._run(args, check=False)
        if done.returncode != 0:
            token.unlink(missing_ok=True)
            with self._lock:
                failed = self._relays.pop(spec.key, None)
            if failed is not None:
                failed.close()
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ExecutorError(f"podman run of {spec.name} failed: {last}")

    def stop(self, key: Key, grace: float) -> None:
        name = self._names.get(key)
        if name is None:
            return
        wait = str(max(0, int(grace + 0.999)))
        threading.Thread(
            target=self._run, args=(["stop", "--time", wait, name],), kwargs={"check": False}, daemon=True
        ).start()

    def watch(self, timeout: float) -> Iterator[Status]:
        end = time.time() + timeout
        while True:
            changed = self._changes()
            if changed or time.time() >= end:
                yield from changed
                return
            time.sleep(min(_POLL, max(0.0, end - time.time())))

    def watch_pool(self, pool: str) -> None:
        """The pool whose containers ``watch`` follows (its executor's)."""
        self._pool = pool

    def find(self, pool: str) -> list[Status]:
        self._pool = pool
        return [status for status, _ in self._statuses(pool)]

    def forget(self, key: Key) -> None:
        """Remove the container and what it used, in the background (``podman rm`` takes a while
        and the driver's loop waits on nothing)."""
        name = self._names.get(key)
        if name is not None:
            thread = threading.Thread(target=self._remove, args=(key, name), daemon=True)
            thread.start()
            self._removing = [t for t in self._removing if t.is_alive()] + [thread]

    def _remove(self, key: Key, name: str) -> None:
        done = self._run(["rm", name], check=False)
        if done.returncode != 0 and "no such container" not in done.stderr.lower():
            return  # still running (rm without -f never removes a running container): keep it
        with self._lock:
            self._names.pop(key, None)
            self._limits.pop(key, None)
            self._seen.pop(key, None)
            relay = self._relays.pop(key, None)
        if relay is not None:
            relay.close()
        (Path(self._secrets) / name).unlink(missing_ok=True)
        self._remove_cgroup(name)

    def close(self) -> None:
        deadline = time.time() + _CLEANUP
        for thread in self._removing:  # removals under way finish before this process ends
            thread.join(max(0.0, deadline - time.time()))
        for relay in self._relays.values():
            relay.close()
        self._relays.clear()
        shutil.rmtree(self._secrets, ignore_errors=True)

    # -- paths ----------------------------------------------------------------------------------
    def target_in_image(self, target: str) -> str:
        """A target whose file is in the project's folder, as the image's copy of that file."""
        where, sep, name = target.rpartition(":")
        if not sep or not where.endswith(".py"):
            return target
        path = Path(where)
        if path.is_absolute() and path.is_relative_to(self.project):
            return f"{self.code}/{path.relative_to(self.project).as_posix()}:{name}"
        return target

    def _mounts(self, job: Any) -> list[str]:
        """The host folders a container sees at their own paths: the run's working folder and
        its artifacts' folder (with the other runs' beside it, whose results it may read)."""
        folders = []
        if job.workdir and os.path.isdir(job.workdir):
            folders.append(os.path.realpath(job.workdir))
        art = job.artifact_dir
        if art and "://" not in art:
            os.makedirs(art, exist_ok=True)
            folders.append(os.path.realpath(os.path.dirname(art.rstrip("/"))))
        kept: list[str] = []
        for folder in sorted(set(folders), key=len):
            if not any(folder == k or folder.startswith(k + "/") for k in kept):
                kept.append(folder)
        return kept

    def _relay(self, key: Key, api: str) -> Relay:
        """A socket of the attempt's own to the API: its first connection says the runner began."""
        parts = urlsplit(api)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        relay = Relay(parts.hostname or "127.0.0.1", port)
        with self._lock:
            old = self._relays.pop(key, None)
            self._relays[key] = relay
        if old is not None:
            old.close()
        return relay

    # -- what podman says -----------------------------------------------------------------------
    def _statuses(self, pool: str) -> list[tuple[Status, str]]:
        found = self._json(["ps", "-a", "--format", "json", "--filter", f"label={LABEL}/pool={pool}"])
        out: list[tuple[Status, str]] = []
        for c in found or []:
            tags = c.get("Labels") or {}
            key = key_of(tags)
            if key is None:
                continue
            name = (c.get("Names") or [""])[0]
            with self._lock:
                self._names.setdefault(key, name)
                with contextlib.suppress(ValueError):
                    self._limits.setdefault(key, int(tags.get(MEMORY_LABEL, "0")))
            out.append((self._status(key, name, c), name))
        return out

    def _status(self, key: Key, name: str, c: Mapping[str, Any]) -> Status:
        state = str(c.get("State", "")).lower()
        if state == "running" or state == "paused":
            relay = self._relays.get(key)
            if relay is not None and not relay.used:  # its timeout counts from the runner's start
                return Status(key, "queued", f"podman container {name} started; its runner is starting")
            return Status(key, "running", f"running in podman container {name} on {os.uname().nodename}")
        if state not in _ENDED:
            return Status(key, "queued", f"podman container {name} is {state or 'being created'}")
        code = c.get("ExitCode")
        return Status(key, "ended", f"podman container {name} exited with {code}", exit_code=code)

    def _changes(self) -> list[Status]:
        if self._pool is None:
            return []
        now = self._statuses(self._pool)
        changed: list[Status] = []
        present = set()
        for status, name in now:
            present.add(status.key)
            mark = (status.phase, status.where)
            if self._seen.get(status.key) == mark:
                continue
            if status.phase == "ended":
                status = self._explain(status, name)
            self._seen[status.key] = mark
            changed.append(status)
        with self._lock:  # a removal in the background may be changing them
            gone = [k for k in self._names if k not in present and k in self._seen]
        for key in gone:
            if self._seen[key][0] != "ended":
                self._seen[key] = ("ended", "")
                changed.append(
                    Status(key, "ended", "", reason="its podman container was removed while it ran")
                )
        return changed

    def _explain(self, status: Status, name: str) -> Status:
        """An ended container's reason: out of memory, or its output kept when it failed."""
        if status.exit_code in (0, None):
            return status
        limit = self._limits.get(status.key, 0)
        if status.exit_code == 137 and limit and self._out_of_memory(name, limit):
            return dataclasses.replace(status, reason=f"out of memory (limit {limit} MiB)")
        kept = self._keep_output(name)
        return dataclasses.replace(status, where=f"{status.where}; its output: {kept}") if kept else status

    def _out_of_memory(self, name: str, limit: int) -> bool:
        if self.cgroups == ("v1", "cgroupfs"):
            peak = _CGROUP / "memory" / "conveyor" / name / "memory.max_usage_in_bytes"
            with contextlib.suppress(OSError, ValueError):
                return int(peak.read_text()) >= limit * 2**20 * 0.98
        elif self.cgroups[1] == "cgroupfs":
            events = _CGROUP / "conveyor" / name / "memory.events"
            with contextlib.suppress(OSError, ValueError):
                counts = dict(line.split() for line in events.read_text().splitlines())
                return int(counts.get("oom_kill", "0")) > 0
        said = self._run(["inspect", "--format", "{{.State.OOMKilled}}", name], check=False)
        return said.stdout.strip() == "true"

    def _keep_output(self, name: str) -> str | None:
        """``podman logs`` of a failed container, kept beside the run's logs (the container,
        and podman's copy, go at ``forget``)."""
        said = self._run(["logs", name], check=False)
        text = (said.stdout + said.stderr).strip()
        if not text:
            return None
        folder = self.log_dir / "podman"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.log"
        path.write_text(text + "\n")
        return str(path)

    def _remove_cgroup(self, name: str) -> None:
        """Remove the container's cgroup parent; conmon may linger in it a moment after the
        container is gone (rmdir of a cgroup that still holds a process fails, harmlessly)."""
        if self.cgroups[1] != "cgroupfs":
            return
        deadline = time.time() + _CLEANUP
        while True:
            left = [*_CGROUP.glob(f"*/conveyor/{name}"), *_CGROUP.glob(f"conveyor/{name}")]
            for parent in left:
                for child in sorted(parent.glob("*/"), reverse=True):
                    with contextlib.suppress(OSError):
                        child.rmdir()
                with contextlib.suppress(OSError):
                    parent.rmdir()
            if not any(p.exists() for p in left) or time.time() > deadline:
                return
            time.sleep(0.5)


def _project_root() -> Path:
    from conveyor import project

    found = project.find()
    return found.root if found is not None else Path.cwd().resolve()


class PodmanExecutor(BatchExecutor):
    """Attempts as containers on this machine's podman (see the module doc)."""

    name = "podman"

    def __init__(
        self,
        workers: int,
        log_dir: str,
        *,
        recorder: Any = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        s = settings_of(settings, SETTINGS, "podman")
        backend = PodmanBackend(s, log_dir)
        jobs = int(s["jobs"]) if s.get("jobs") else max(1, workers)
        super().__init__(backend, pool=pool_name(recorder, log_dir), jobs=jobs)
        backend.watch_pool(self.pool)
