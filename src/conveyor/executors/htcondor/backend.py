"""The HTCondor backend of the batch executor: a schedd through the official bindings.

Submits one job per attempt (``submit.description``), watches them by querying the schedd for
the jobs whose ``ConveyorPool`` is ours (a projection of the few attributes ``status`` reads, at
most every ``poll`` seconds), and reads ``condor_history`` for a job that left the queue. A
new owner after a takeover finds its attempts' jobs by ``ConveyorAttempt``; a job is never
removed because a Conveyor process stopped, only when Conveyor stops its attempt (or the job
is held: a held job would run again if someone released it, beside the attempt that retries it).

Every call into the bindings is translated at this edge: an unreachable schedd or collector is
one ``ExecutorError`` line naming it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conveyor.errors import ExecutorError
from conveyor.executors import need
from conveyor.executors.batch import LABEL, Key, Spec, Status
from conveyor.executors.htcondor.settings import CondorSettings
from conveyor.executors.htcondor.status import ATTRIBUTES, gone, job_id, status_of
from conveyor.executors.htcondor.submit import (
    ATTEMPT,
    POOL,
    as_submit,
    attempt_id,
    classad_string,
    description,
    files_of,
)
from conveyor.resources import Resources

log = logging.getLogger(__name__)


def connect(settings: CondorSettings) -> Any:
    """The schedd the settings name, located through its collector; one line if unreachable."""
    htcondor2 = need("htcondor2", "htcondor")
    try:
        if settings.schedd or settings.collector:
            collector = htcondor2.Collector(settings.collector or None)
            kind = htcondor2.DaemonType.Schedd
            ad = collector.locate(kind, settings.schedd) if settings.schedd else collector.locate(kind)
            return htcondor2.Schedd(ad)
        return htcondor2.Schedd()
    except Exception as exc:  # HTCondorException, or a ValueError for an unknown name
        raise unreachable(settings, exc) from None


def unreachable(settings: CondorSettings, exc: BaseException) -> ExecutorError:
    return ExecutorError(
        f"HTCondor schedd {settings.schedd_name} cannot be reached: {first_line(exc)}; check "
        "[executor.htcondor] schedd and collector (condor_q -name SCHEDD -pool COLLECTOR must answer here)"
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class CondorBackend:
    """The batch executor's Backend for one HTCondor schedd."""

    name = "htcondor"

    def __init__(self, settings: CondorSettings, schedd: Any = None) -> None:
        self.settings = settings
        self.image = settings.image
        self._schedd = schedd if schedd is not None else connect(settings)
        self._where = settings.schedd or "local"
        self._pools: set[str] = set()
        self._ids: dict[Key, str] = {}  # key -> cluster.proc
        self._dirs: dict[Key, Path] = {}  # key -> its files on the submit side
        self._done: set[Key] = set()  # forgotten jobs still in the queue
        self._last: dict[Key, Status] = {}  # what was said of each job, to report only changes
        self._next_query = 0.0

    # -- the Backend protocol -------------------------------------------------------------------
    def check(self, resources: Resources) -> str | None:
        """Only a resource HTCondor cannot name is refused up front; why a job matches no slot
        is HTCondor's to say while it waits (``LastRejMatchReason``)."""
        for name in resources.custom:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
                return (
                    f"HTCondor cannot request a resource named {name!r} (request_{name}): a machine "
                    "resource's name is letters, digits and '_'"
                )
        return None

    def start(self, spec: Spec) -> None:
        pool = spec.labels.get(f"{LABEL}/pool", "")
        self._pools.add(pool)
        files = files_of(spec, self.settings)
        files.folder.mkdir(parents=True, exist_ok=True)
        _write_secret(files.token, spec.token)
        desc = description(spec, self.settings, pool)
        try:
            result = self._schedd.submit(as_submit(desc))
        except Exception as exc:
            shutil.rmtree(files.folder, ignore_errors=True)
            raise ExecutorError(
                f"HTCondor schedd {self.settings.schedd_name} did not take job {spec.name}: {first_line(exc)}"
            ) from None
        self._ids[spec.key] = f"{result.cluster()}.0"
        self._dirs[spec.key] = files.folder

    def stop(self, key: Key, grace: float) -> None:
        """``condor_rm``: HTCondor sends the job its kill signal, then kills it after the pool's
        vacate time (``job_max_vacate_time``); ``grace`` is HTCondor's to apply."""
        self._remove(key, "stopped by Conveyor")

    def watch(self, timeout: float) -> Iterator[Status]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            wait = self._next_query - time.monotonic()
            if wait > 0:
                if time.monotonic() + wait > deadline:
                    time.sleep(max(0.0, deadline - time.monotonic()))
                    return
                time.sleep(wait)
            self._next_query = time.monotonic() + self.settings.poll
            changed = list(self._changes())
            if changed or time.monotonic() >= deadline:
                yield from changed
                return

    def find(self, pool: str) -> list[Status]:
        self._pools.add(pool)
        found = []
        for ad in self._query(f"{POOL} == {classad_string(pool)}"):
            status = status_of(ad, self._where)
            if status is not None:
                self._ids[status.key] = job_id(ad) or ""
                if status.phase != "ended":  # an ended one is reported by watch, then forgotten
                    self._last[status.key] = status
                found.append(status)
        return found

    def forget(self, key: Key) -> None:
        """Its end is reported: remove the job if it is held (released, it would run beside the
        attempt that retries it; a running job is never removed here), and the submit side's
        files (the token with them). Its ad is not reported again."""
        last = self._last.pop(key, None)
        if last is not None and last.phase == "ended" and last.where.startswith("held"):
            with contextlib.suppress(ExecutorError):
                self._remove(key, "held: Conveyor retries the task as a new attempt")
        self._ids.pop(key, None)
        self._done.add(key)
        folder = self._dirs.pop(key, None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        self._ids.clear()
        self._last.clear()

    # -- helpers ------------------------------------------------------------------------------
    def _changes(self) -> Iterator[Status]:
        seen: set[Key] = set()
        for pool in sorted(self._pools):
            ads = self._try_query(f"{POOL} == {classad_string(pool)}")
            if ads is None:  # no answer: nothing is known to have left the queue
                return
            for ad in ads:
                status = status_of(ad, self._where)
                if status is None:
                    continue
                seen.add(status.key)
                if status.key in self._done:  # reported and forgotten; leaving the queue
                    continue
                self._ids.setdefault(status.key, job_id(ad) or "")
                yield from self._report(status)
        self._done &= seen  # gone from the queue: its ad cannot come back
        for key in [k for k in self._ids if k not in seen]:
            status = self._history(key)
            if status is not None:
                yield from self._report(status)

    def _report(self, status: Status) -> Iterator[Status]:
        if self._last.get(status.key) != status:
            self._last[status.key] = status
            yield status

    def _history(self, key: Key) -> Status | None:
        """The end of a job that left the queue, from ``condor_history``."""
        if self._last.get(key) is not None and self._last[key].phase == "ended":
            return None
        try:
            ads = self._schedd.history(f"{ATTEMPT} == {classad_string(attempt_id(key))}", ATTRIBUTES, 1)
        except Exception as exc:
            log.warning("%s", unreachable(self.settings, exc))
            return None
        for ad in ads:
            status = status_of(ad, self._where)
            if status is not None:
                return status
        return gone(key, self._where)

    def _query(self, constraint: str) -> list[Any]:
        """The job ads that meet ``constraint``; one line if the schedd does not answer."""
        try:
            return list(self._schedd.query(constraint, ATTRIBUTES))
        except Exception as exc:
            raise unreachable(self.settings, exc) from None

    def _try_query(self, constraint: str) -> list[Any] | None:
        """As ``_query``, but a schedd that does not answer (restarting) is logged: None."""
        try:
            return self._query(constraint)
        except ExecutorError as exc:
            log.warning("%s (trying again in %g s)", exc, self.settings.poll)
            return None

    def _remove(self, key: Key, why: str) -> None:
        htcondor2 = need("htcondor2", "htcondor")
        spec = self._ids.get(key) or f"{ATTEMPT} == {classad_string(attempt_id(key))}"
        try:
            self._schedd.act(htcondor2.JobAction.Remove, spec)
            log.info("removed HTCondor job %s: %s", spec, why)
        except Exception as exc:
            raise unreachable(self.settings, exc) from None


def _write_secret(path: Path, token: str) -> None:
    """The token, readable by its owner only, written before any other process can open it."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
