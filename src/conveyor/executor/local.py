"""The local executor: a pool of persistent worker processes on this machine.

Each worker runs one attempt at a time. The pool enforces timeouts (the worker's whole process
group is killed and the worker replaced), cancels with a grace period (SIGTERM, then SIGKILL),
and reports a worker that died as a lost attempt.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from conveyor.runner import Job, Outcome, worker_main

_ctx = mp.get_context("fork" if hasattr(os, "fork") else "spawn")


@dataclass(slots=True)
class _Worker:
    index: int
    process: Any
    conn: Connection
    job: Job | None = None
    deadline: float | None = None  # timeout of the running attempt
    kill_at: float | None = None  # end of a cancel's grace period
    cancelling: bool = False


@dataclass(frozen=True, slots=True)
class Lost:
    """A worker died (or was killed for a timeout) while running ``job``."""

    job: Job
    reason: str
    timed_out: bool = False


class LocalExecutor:
    def __init__(self, workers: int, log_dir: str) -> None:
        self.size = workers
        self.log_dir = log_dir
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._dead: list[Lost] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        for i in range(self.size):
            self._workers.append(self._spawn(i))
        self._idle = list(self._workers)

    def _spawn(self, index: int) -> _Worker:
        parent, child = _ctx.Pipe()
        log = os.path.join(self.log_dir, f"worker-{index}.log")
        proc = _ctx.Process(target=worker_main, args=(child, index, log), daemon=True)  # type: ignore[attr-defined]
        proc.start()
        child.close()
        return _Worker(index, proc, parent)

    def shutdown(self, *, kill: bool = False) -> None:
        for w in self._workers:
            if kill or w.job is not None:
                self._kill(w)
            else:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in self._workers:
            w.process.join(timeout=2)
            if w.process.is_alive():
                self._kill(w)
                w.process.join(timeout=2)
            w.conn.close()
        self._workers = []
        self._idle = []

    # -- work -----------------------------------------------------------------------------------
    @property
    def idle(self) -> int:
        return len(self._idle)

    def submit(self, job: Job, timeout: float | None, now: float) -> None:
        w = self._idle.pop()
        w.job = job
        w.deadline = now + timeout if timeout else None
        try:
            w.conn.send(job)
        except OSError:
            self._dead.append(Lost(job, "the worker process died before it received the attempt"))
            self._replace(w, "dead")

    def cancel(self, instance: str, attempt: int, grace: float, now: float) -> None:
        for w in self._workers:
            if w.job is not None and w.job.instance == instance and w.job.attempt == attempt:
                w.cancelling = True
                w.kill_at = now + grace
                self._signal(w, signal.SIGTERM)

    def next_deadline(self) -> float | None:
        times = [t for w in self._workers for t in (w.deadline, w.kill_at) if t is not None]
        return min(times) if times else None

    def poll(self, timeout: float) -> Iterator[Outcome | Lost]:
        """Wait up to ``timeout`` seconds; yield what finished, died or timed out."""
        yield from self._drain_dead()
        busy = {w.conn: w for w in self._workers if w.job is not None}
        sentinels = {w.process.sentinel: w for w in busy.values()}
        if not busy:
            if timeout > 0:
                time.sleep(min(timeout, 0.05))
            return
        ready = wait([*busy, *sentinels], timeout)
        for obj in ready:
            w = busy.get(obj)  # type: ignore[call-overload]
            if w is None or w.job is None:
                continue
            try:
                while w.conn.poll():
                    out: Outcome = w.conn.recv()
                    self._finish(w)
                    yield out
            except (EOFError, OSError):
                pass
        for obj in ready:
            w = sentinels.get(obj)
            if w is not None and w.job is not None and not w.process.is_alive():
                code = w.process.exitcode
                reason = f"the worker process died (exit code {code})"
                if code is not None and code < 0:
                    reason = f"the worker process was killed by signal {-code}"
                yield self._lost(w, reason)
        now = time.time()
        for w in self._workers:
            if w.job is None:
                continue
            if w.kill_at is not None and now >= w.kill_at:
                yield self._lost(w, "cancelled; killed after the grace period")
            elif w.deadline is not None and now >= w.deadline and not w.cancelling:
                yield self._lost(w, "timed out", timed_out=True)

    def _finish(self, w: _Worker) -> None:
        w.job = None
        w.deadline = w.kill_at = None
        w.cancelling = False
        self._idle.append(w)

    def _lost(self, w: _Worker, reason: str, timed_out: bool = False) -> Lost:
        assert w.job is not None
        lost = Lost(w.job, reason, timed_out)
        self._replace(w, reason)
        return lost

    def _replace(self, w: _Worker, reason: str) -> None:
        self._kill(w)
        w.process.join(timeout=5)
        w.conn.close()
        fresh = self._spawn(w.index)
        self._workers[self._workers.index(w)] = fresh
        self._idle.append(fresh)
        if w in self._idle:
            self._idle.remove(w)

    def _drain_dead(self) -> Iterator[Lost]:
        dead, self._dead = self._dead, []
        yield from dead

    def _signal(self, w: _Worker, sig: int) -> None:
        try:
            os.killpg(w.process.pid, sig)  # the worker and any script it started
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(w.process.pid, sig)
            except ProcessLookupError:
                pass

    def _kill(self, w: _Worker) -> None:
        self._signal(w, signal.SIGKILL)

    @property
    def cancelling(self) -> bool:
        return any(w.cancelling for w in self._workers)

    def running(self) -> list[Job]:
        return [w.job for w in self._workers if w.job is not None]
