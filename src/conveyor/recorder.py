"""What a runner writes to the store about its attempts (``Recorder``), in a worker process."""

from __future__ import annotations

import collections
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from conveyor.errors import ConveyorError
from conveyor.runner import NEVER_STARTED, Job, Outcome, short_error
from conveyor.store.records import CLAIM_TTL, Holder


class Recorder:
    """What the runner writes to the store, each with a conditional update (the attempt must
    still be current; the first completion wins), so that an attempt's end lands even when the
    process that launched it died (a killed `conveyor run`, a scheduler), and a new owner can
    tell a running attempt from a lost one.

    Under a scheduler the runner records its attempt's start (claiming the instance id, see
    ``store.claims``), heartbeats and end. Under `conveyor run` (``deferred``) the driver claims
    and records, the runner only beats, and records its last ends itself if the driver died.
    Either way, if another run's attempt (or an older attempt of its own run, left running by a
    dead driver) is executing the same task instance, the runner waits for it and takes its
    outcome instead of executing the task a second time. A store that does not answer is retried
    with backoff for ``patience`` seconds; then the attempt goes on (or its end goes to its
    driver only, which records it in its own commit).
    """

    #: Seconds between a waiting runner's looks at the attempt it waits for.
    POLL = 0.25

    #: The attempt's driver takes the claims and records every end it hears of in its group
    #: commit (``conveyor run``): the runner writes nothing per attempt, only beats while one
    #: runs; if its driver dies, it records the ends of its last attempts itself (``orphaned``).
    deferred: bool

    def __init__(
        self, url: str, interval: float = 1.0, patience: float = 120.0, *, deferred: bool = False
    ) -> None:
        self.url = url
        self.deferred = deferred
        self._recent: collections.deque[tuple[Job, Outcome]] = collections.deque(maxlen=16)
        self.interval = interval
        self.patience = patience
        self.current: tuple[str, str, int] | None = None
        self._store: Any = None
        self._thread: Any = None
        self._owner = ""

    def _db(self) -> Any:
        if self._store is None:
            from conveyor.store import open_embedded

            self._store = open_embedded(self.url)  # a SQLite file: without SQLAlchemy
            self._owner = f"{socket.gethostname()}:{os.getpid()}"
        return self._store

    def _retrying(self, what: str, fn: Any) -> Any:
        deadline, delay = time.monotonic() + self.patience, 0.2
        while True:
            try:
                return fn(self._db())
            except ConveyorError as exc:
                if time.monotonic() + delay > deadline:
                    print(f"runner: giving up on {what}: {exc}", file=sys.__stderr__, flush=True)
                    return None
                print(
                    f"runner: {what} failed ({exc}); retrying in {delay:.1f}s",
                    file=sys.__stderr__,
                    flush=True,
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def begin(self, job: Job, take_from: tuple[str, int] | None = None) -> bool | Holder:
        """Start the attempt: False if it is no longer current (another scheduler declared it
        lost, or it was cancelled); a ``Holder`` if another attempt executes the instance now;
        True if this one executes it."""
        self.start()
        got = self._retrying(
            "the attempt's start",
            lambda db: db.begin_attempt(
                job.run_id, job.instance, job.attempt, self._owner, time.time(), take_from=take_from
            ),
        )
        if got == "stale":
            return False
        self.current = (job.run_id, job.instance, job.attempt)
        return True if got is None else cast("Holder", got)

    def wait(self, job: Job, holder: Holder, say: Callable[[str], None]) -> Outcome | None:
        """Wait for ``holder``'s attempt of the same instance and take its outcome; None when
        it ended without one (lost, cancelled) or its runner died, and this attempt now holds
        the claim: then it executes the task itself."""
        from conveyor.owners import owner_is_dead

        started = time.time()
        if holder.state == "succeeded":
            say(f"conveyor: run {holder.run_id} executed this task while this run was going; taking it")
            return Outcome(
                job.run_id, job.instance, job.attempt, "succeeded", holder.result, None,
                started, time.time(), waited_for=holder.run_id,
            )  # fmt: skip
        say(f"conveyor: run {holder.run_id} is executing this task (attempt {holder.attempt}); waiting")
        while True:
            time.sleep(self.POLL)
            seen = self._retrying(
                "waiting for the other attempt", lambda db, h=holder: db.waiting_on(job.instance, h)
            )
            if seen is None:
                continue
            claim, status = seen
            if status is not None and status.state == "succeeded":
                say(f"conveyor: run {holder.run_id}'s attempt succeeded; taking its outcome")
                return Outcome(
                    job.run_id, job.instance, job.attempt, "succeeded", status.result, None,
                    started, time.time(), waited_for=holder.run_id,
                )  # fmt: skip
            if status is not None and status.state == "failed":
                error = f"run {holder.run_id}'s attempt {holder.attempt} of this task failed"
                error += f":\n{status.error}" if status.error else ""
                say(f"conveyor: {error}")
                return Outcome(
                    job.run_id, job.instance, job.attempt, "failed", None, error,
                    started, time.time(), waited_for=holder.run_id,
                )  # fmt: skip
            mine = claim is not None and (claim.run_id, claim.attempt) == (holder.run_id, holder.attempt)
            now = time.time()
            # renewed in the last 3 s: by its runner's beat, or its driver's turn
            fresh = claim is not None and claim.expires - CLAIM_TTL > now - 3.0
            gone = claim is not None and owner_is_dead(claim.owner) and not fresh
            if mine and claim is not None and claim.expires > now and not gone:
                continue  # still executing
            # It ended without an outcome to take, or its runner is gone: claim the instance.
            dead = mine and gone
            got = self.begin(job, (holder.run_id, holder.attempt) if dead else None)
            if got is False:
                return Outcome(job.run_id, job.instance, job.attempt, "cancelled", None, "cancelled")
            if got is True:
                say(f"conveyor: run {holder.run_id}'s attempt ended without a result; executing here")
                return None
            holder = got
            say(f"conveyor: run {holder.run_id} is executing this task now (attempt {holder.attempt})")

    def done(self, job: Job, out: Outcome) -> None:
        """Deferred: the attempt ended; its driver records it, or, if it died, ``orphaned``."""
        self.current = None
        self._recent.append((job, out))

    def orphaned(self, dropped: list[Job]) -> None:
        """The driver died (deferred): record the ends of the last attempts (those it recorded
        already are refused, being no longer current), and the jobs it had queued here as lost
        before they started, so that the run's next driver runs them again at once."""
        print(
            f"runner: the process driving the run died; recording the last {len(self._recent)} ends "
            f"and {len(dropped)} queued attempts never started",
            file=sys.__stderr__,
            flush=True,
        )
        for job, out in reversed(self._recent):  # newest first: the likeliest not recorded yet
            self.end(job, out)
        now = time.time()
        for job in dropped:
            self._retrying(
                "recording a job never started",
                lambda db, j=job: db.declare_lost(j.run_id, j.instance, j.attempt, now, NEVER_STARTED),
            )

    def end(self, job: Job, out: Outcome) -> None:
        self.current = None
        status = out.status if out.status in ("succeeded", "failed", "cancelled") else "failed"
        self._retrying(
            "recording the attempt's end",
            lambda db: db.record_attempt(
                job.run_id,
                job.instance,
                job.attempt,
                status,
                ended_at=out.ended,
                result=out.result,
                error=short_error(out.error),
                waited_for=out.waited_for,
                outputs=out.outputs if status == "succeeded" else None,
            ),
        )

    def start(self) -> None:
        """Beat for the current attempt every ``interval`` seconds, on a thread of its own."""
        if self._thread is None:
            import threading

            self._thread = threading.Thread(target=self._beat, name="conveyor-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while True:
            time.sleep(self.interval)
            key = self.current
            if key is None:
                continue
            try:
                self._db().beat_attempt(*key, time.time())
            except ConveyorError:
                pass  # the store is away: the attempt's end retries; a missed beat is harmless
