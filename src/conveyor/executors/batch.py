"""Batch engines: each attempt a job of the engine's own (a podman container, a Kubernetes Job,
an HTCondor job).

Such engines hold their jobs themselves, queue them for as long as the cluster is busy, and
outlive the process that submitted them. ``BatchExecutor`` implements the executor port once
for all of them on top of a small engine-specific ``Backend``: it builds each attempt's job
(``Spec``: the runner command, its environment, the attempt's token to pass secretly, the
task's resources, the run's team, labels that find the job again), turns what the engine says
(``Status``) into reports, enforces timeouts and cancels through the engine, and adopts a
previous owner's jobs by label.

The runner in the job (``conveyor.executors.command``) records the attempt's start, beats and
end through the execution API, so how an attempt ended is the store's to tell: a job that ended
with its runner's word is reported ``Unknown`` (the driver reads the store); one that ended
without it (out of memory, evicted, held, never scheduled) is ``Lost`` with the engine's
reason. While the engine holds a job, queued or running, ``running()`` lists it: the driver
never declares such an attempt lost for want of heartbeats, so a job queued for an hour in a
busy cluster is not submitted twice after a takeover. ``Placed`` reports say where the engine
has it (queued and why, pulling an image, on which node), and the driver records them.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from conveyor.errors import ExecutorError
from conveyor.executors.command import CANNOT_BEGIN, RUNNER, TIMED_OUT, runner_env
from conveyor.executors.port import Launch, Lost, Placed, Report, Unknown
from conveyor.resources import Resources
from conveyor.runner import Job

Key = tuple[str, str, int]  # (run id, instance, attempt)
Phase = Literal["queued", "running", "ended"]

#: Labels every job carries: its pool, run, instance and attempt.
LABEL = "conveyor.io"
#: How long after a cancel's grace an engine that never confirmed the stop is given up on.
UNCONFIRMED = 30.0
#: The runner enforces a task's timeout from when it begins; the executor stops a job that runs
#: this much longer still (its runner never began, or hangs before it could stop itself).
STARTING = 120.0
#: How long closing waits for held jobs the store says ended to end in the engine too.
SETTLE = 5.0


@dataclass(frozen=True, slots=True)
class Spec:
    """One attempt as a batch job: what every engine needs to run it."""

    key: Key
    name: str  # engine-safe: [a-z0-9-], at most 63 characters, unique per attempt
    command: tuple[str, ...]  # the runner: ``python3 -m conveyor.executors.runjob`` (``command.RUNNER``)
    env: Mapping[str, str]  # the job and the API's address; never the token
    token: str  # the attempt's execution-API token: a backend passes it secretly (a file, a Secret)
    resources: Resources
    timeout: float | None
    team: str  # "" when the run has none: the engine's namespace, accounting group or queue
    labels: Mapping[str, str]
    network: bool
    job: Job


@dataclass(frozen=True, slots=True)
class Status:
    """What the engine says of one job, in its own terms."""

    key: Key
    phase: Phase
    where: str  # one line: "queued in Kueue (team-a): ...", "pulling image ...", "running on node n1"
    exit_code: int | None = None
    reason: str | None = None  # ended without its runner's word: "out of memory (limit 256 MiB)", ...
    blameless: bool = False  # it never started: not the task's fault


class Backend(Protocol):
    """One engine's jobs: submit, stop, watch and find them."""

    name: str
    image: str | None  # the image attempts run in (recorded in each run that used it), if any

    def check(self, resources: Resources) -> str | None:
        """Why no job could ever get ``resources`` (one line), or None."""
        ...

    def start(self, spec: Spec) -> None:
        """Submit the job; a one-line ``ExecutorError`` if the engine refuses it."""
        ...

    def stop(self, key: Key, grace: float) -> None:
        """Ask the job to stop; the engine kills it after ``grace`` seconds."""
        ...

    def watch(self, timeout: float) -> Iterator[Status]:
        """Status changes since the last call, waiting up to ``timeout`` seconds for the first."""
        ...

    def find(self, pool: str) -> list[Status]:
        """Every job of ``pool`` the engine holds now, found by label (a new owner adopts them)."""
        ...

    def forget(self, key: Key) -> None:
        """The job ended and its end is reported: clean up what needs it. Never stops a job."""
        ...

    def close(self) -> None: ...


def labels(pool: str, job: Job) -> dict[str, str]:
    return {
        f"{LABEL}/pool": pool,
        f"{LABEL}/run": job.run_id,
        f"{LABEL}/instance": job.instance,
        f"{LABEL}/attempt": str(job.attempt),
    }


def key_of(found: Mapping[str, str]) -> Key | None:
    """The attempt a job's labels name, or None when they name none."""
    try:
        return found[f"{LABEL}/run"], found[f"{LABEL}/instance"], int(found[f"{LABEL}/attempt"])
    except (KeyError, ValueError):
        return None


def job_name(job: Job) -> str:
    """A name every engine accepts (a DNS label): unique per attempt, readable."""
    run = re.sub(r"[^a-z0-9]", "", job.run_id.lower())
    inst = re.sub(r"[^a-z0-9]", "", job.instance.lower())[:10]
    return f"cv-{run}-{inst}-{job.attempt}"[:63].rstrip("-")


def spec_of(
    job: Job,
    *,
    api: str,
    token: str,
    resources: Resources,
    timeout: float | None,
    team: str,
    pool: str,
    network: bool,
) -> Spec:
    """The attempt as a batch job: what ``submit`` hands the engine, and what the engines'
    previews (``conveyor kubernetes manifests``, ``conveyor htcondor submit-file``) show."""
    return Spec(
        key=(job.run_id, job.instance, job.attempt),
        name=job_name(job),
        command=RUNNER,
        env=runner_env(job, api, timeout),
        token=token,
        resources=resources,
        timeout=timeout,
        team=team,
        labels=labels(pool, job),
        network=network,
        job=job,
    )


def pool_name(recorder: Any, log_dir: str) -> str:
    """Jobs are shared by every owner of the same store (any new owner finds them by label)."""
    basis = getattr(recorder, "url", None) or os.path.abspath(os.path.join(log_dir, os.pardir))
    return "cv-" + hashlib.sha1(str(basis).encode()).hexdigest()[:10]


@dataclass
class _Job:
    job: Job
    timeout: float | None = None
    where: str = ""
    deadline: float | None = None  # its timeout, counted from when it runs
    give_up: float | None = None  # a stop the engine never confirmed: reported lost then
    why_stopped: Lost | None = None  # what to report when the engine confirms the stop


class BatchExecutor:
    """The executor port on a ``Backend`` (see the module doc). Adapters subclass it, build
    their backend from their settings and set ``name``."""

    name: ClassVar[str] = "batch"
    #: Attempts handed to the engine at once (it queues the rest itself), unless set.
    JOBS: ClassVar[int] = 100

    def __init__(self, backend: Backend, *, pool: str, jobs: int | None = None) -> None:
        self.backend = backend
        self.pool = pool
        self.jobs = max(1, int(jobs or self.JOBS))
        self._held: dict[Key, _Job] = {}
        self._reports: list[Lost | Unknown | Placed] = []

    # -- port properties ------------------------------------------------------------------------
    @property
    def image(self) -> str | None:
        return self.backend.image

    @property
    def slots(self) -> int:
        """Attempts a run may have in the engine at once (the run's capacity counts them)."""
        return self.jobs

    @property
    def prefetch(self) -> int:
        return self.jobs

    @property
    def quick(self) -> bool:
        return True

    @property
    def has_room(self) -> bool:
        return len(self._held) < self.jobs

    def check(self, resources: Resources) -> str | None:
        return self.backend.check(resources)

    # -- attempts -------------------------------------------------------------------------------
    def submit(self, job: Job, launch: Launch, now: float) -> None:
        ticket = launch.ticket
        if ticket is None or ticket.deferred or not ticket.api:
            raise ExecutorError(
                f"the {self.name} executor needs the execution API to reach its jobs: "
                '[executor] api = "http://HOST:PORT" in conveyor.toml names a conveyor server'
            )
        spec = spec_of(
            job, api=ticket.api, token=ticket.token, resources=launch.resources, timeout=launch.timeout,
            team=launch.team, pool=self.pool, network=launch.network,
        )  # fmt: skip
        key = spec.key
        held = self._held[key] = _Job(job, launch.timeout)
        try:
            self.backend.start(spec)
        except ExecutorError as exc:
            del self._held[key]
            self._reports.append(Lost(job, f"{self.name} refused the job: {exc}"))
            return
        held.where = f"submitted to {self.name}"

    def cancel(self, instance: str, attempt: int, grace: float, now: float) -> None:
        found = next((k for k in self._held if k[1:] == (instance, attempt)), None)
        if found is None:
            return
        held = self._held[found]
        if held.why_stopped is None:
            self._stop(found, held, Lost(held.job, "cancelled"), grace, now)

    def _stop(self, key: Key, held: _Job, why: Lost, grace: float, now: float) -> None:
        held.why_stopped = why
        held.give_up = now + grace + UNCONFIRMED
        try:
            self.backend.stop(key, grace)
        except ExecutorError as exc:  # the engine is out of reach: say so when giving up
            held.why_stopped = Lost(held.job, f"{why.reason}; {self.name} did not confirm the stop: {exc}")

    def next_deadline(self) -> float | None:
        times = [t for h in self._held.values() for t in (h.deadline, h.give_up) if t is not None]
        return min(times) if times else None

    def poll(self, timeout: float) -> Iterator[Report]:
        end = time.time() + timeout
        while True:
            now = time.time()
            wait = max(0.0, end - now)
            due = self.next_deadline()
            if due is not None:
                wait = max(0.0, min(wait, due - now))
            if self._reports:
                wait = 0.0
            for status in self.backend.watch(wait):
                self._seen(status, time.time())
            self._timers(time.time())
            if self._reports:
                reports, self._reports = self._reports, []
                yield from reports
                return
            if time.time() >= end:
                return

    def _seen(self, status: Status, now: float) -> None:
        held = self._held.get(status.key)
        if held is None:
            if status.phase == "ended":  # a job it let go of, or reported already: clean up
                self._forget(status.key)
            return
        job = held.job
        if status.phase != "ended":
            if status.phase == "running" and held.deadline is None and held.timeout:
                held.deadline = now + held.timeout + STARTING  # the runner's own timeout comes first
            if status.where and status.where != held.where:
                held.where = status.where
                self._reports.append(Placed(job, status.where))
            return
        del self._held[status.key]
        self._forget(status.key)
        if held.why_stopped is not None and status.exit_code != 0:
            self._reports.append(held.why_stopped)
        elif status.reason is not None:
            self._reports.append(Lost(job, status.reason, blameless=status.blameless))
        elif status.exit_code == 0:
            self._reports.append(Unknown(job, f"its {self.name} job ended; its runner recorded how"))
        elif status.exit_code == TIMED_OUT:
            self._reports.append(Lost(job, "timed out", timed_out=True))
        elif status.exit_code == CANNOT_BEGIN:
            why = f"its runner could not begin in the {self.name} job"
            self._reports.append(Lost(job, why, blameless=True))
        else:
            code = "no exit code" if status.exit_code is None else f"exit code {status.exit_code}"
            self._reports.append(Lost(job, f"its {self.name} job ended with {code} ({status.where})"))

    def _timers(self, now: float) -> None:
        for key, held in list(self._held.items()):
            if held.give_up is not None and now >= held.give_up:
                del self._held[key]
                assert held.why_stopped is not None
                self._reports.append(held.why_stopped)
            elif held.deadline is not None and now >= held.deadline and held.why_stopped is None:
                held.deadline = None
                self._stop(key, held, Lost(held.job, "timed out", timed_out=True), 0.0, now)

    def _settle(self, patience: float) -> None:
        """Jobs still held at the end are adopted ones whose ends the store told: give the
        engine a moment to say they ended, and clean them up (a next owner would, otherwise)."""
        end = time.time() + patience
        while self._held and time.time() < end:
            for status in self.backend.watch(min(0.2, max(0.0, end - time.time()))):
                if status.phase == "ended" and self._held.pop(status.key, None) is not None:
                    self._forget(status.key)

    def _forget(self, key: Key) -> None:
        try:
            self.backend.forget(key)
        except ExecutorError:
            pass  # its leftovers stay for the engine's own clean-up (a TTL, `podman rm`)

    def running(self) -> list[Job]:
        return [h.job for h in self._held.values()]

    # -- owners ---------------------------------------------------------------------------------
    def adopt(self, jobs: Sequence[Job]) -> None:
        """Find the jobs a previous owner submitted (by label) and hold those the engine still
        has: their ends are reported as the others', and ``cancel`` reaches them."""
        wanted = {(j.run_id, j.instance, j.attempt): j for j in jobs}
        if not wanted:
            return
        for status in self.backend.find(self.pool):
            job = wanted.get(status.key)
            if job is None or status.key in self._held or status.phase == "ended":
                continue
            self._held[status.key] = _Job(job, where=status.where)
            if status.where:
                self._reports.append(Placed(job, status.where))

    def drop(self, match: Callable[[Job], bool]) -> None:
        """Let go: the engine keeps the jobs, their runners record their ends."""
        for key in [k for k, h in self._held.items() if match(h.job)]:
            del self._held[key]
        self._reports = [r for r in self._reports if not match(r.job)]

    def detach(self) -> None:
        self.drop(lambda job: True)
        self.backend.close()

    def close(self, *, kill: bool = False) -> None:
        if kill:
            for key in list(self._held):
                try:
                    self.backend.stop(key, 0.0)
                except ExecutorError:
                    pass
        else:
            self._settle(SETTLE)
        self._held.clear()
        self._reports.clear()
        self.backend.close()


def settings_of(settings: Mapping[str, Any] | None, known: Sequence[str], name: str) -> dict[str, Any]:
    """An adapter's settings, with a one-line error naming an unknown one."""
    s = dict(settings or {})
    unknown = sorted(set(s) - set(known))
    if unknown:
        raise ExecutorError(
            f"[executor.{name}] has no setting {unknown[0]!r}; the settings are {', '.join(known)}"
        )
    return s
