"""The runner on an engine: what a Dask task, a Ray actor or any other engine's job executes.

``run_remote(job, report)`` runs one attempt with Conveyor's runner, exactly as a local worker
does: it loads the pipeline (by path or module, ``job.target``), runs the task, makes its
targets final, saves its result and records its start, heartbeats and end itself with the
store's conditional updates (the first completion wins). So the end lands even when the process
that launched the attempt, or the engine's own scheduler, is gone.

``report`` says how the runner records: a ``Ticket`` (the execution API's address and this
attempt's token: a runner on another machine never holds the store's credentials), or a store
URL (a pool on this machine that may write to the store directly, as local workers do).

One attempt runs in a process at a time (the runner redirects the process's stdout and working
directory while it runs): adapters give each engine worker one slot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import threading
import time
from typing import Any

from conveyor.executors.port import Ticket
from conveyor.runner import Cancelled, Job, Outcome, install_logging, run_attempt, short_error, stale

_lock = threading.Lock()  # one attempt per process at a time (see above)
_recorders: dict[str, Any] = {}
_logging = False


def run_remote(job: Job, report: Ticket | str) -> Outcome:
    """Run ``job`` here and record it; the outcome (also recorded) for the engine to return."""
    global _logging
    with _lock:
        if not _logging:
            install_logging()
            _logging = True
        if isinstance(report, Ticket) and report.deferred:
            return _deferred(job)
        recorder = _recorder(report)
        scratch = None
        if isinstance(report, Ticket):  # the log is written here and sent in chunks
            scratch = tempfile.mkdtemp(prefix="conveyor-attempt-")
            job = dataclasses.replace(job, log_path=os.path.join(scratch, "attempt.log"))
        try:
            begun = recorder.begin(job)
            if begun is False:
                return stale(job)
            cwd = os.getcwd()
            if job.workdir and os.path.isdir(job.workdir):
                os.chdir(job.workdir)
            try:
                out = run_attempt(job, None if begun is True else (recorder, begun))
            finally:
                os.chdir(cwd)
            out = Outcome(
                out.run_id, out.instance, out.attempt, out.status, out.result,
                short_error(out.error), out.started, out.ended, out.waited_for, out.outputs,
            )  # fmt: skip
            recorder.end(job, out)
            return out
        except (Cancelled, KeyboardInterrupt):  # an engine's cancel that landed outside the task
            now = time.time()
            out = Outcome(job.run_id, job.instance, job.attempt, "cancelled", None, "cancelled", now, now)
            with contextlib.suppress(Exception):
                recorder.end(job, out)
            return out
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)


def _deferred(job: Job) -> Outcome:
    """An attempt its launching process records (see ``Ticket.deferred``)."""
    cwd = os.getcwd()
    if job.workdir and os.path.isdir(job.workdir):
        os.chdir(job.workdir)
    try:
        out = run_attempt(job)
    except (Cancelled, KeyboardInterrupt):  # an engine's cancel that landed outside the task
        now = time.time()
        return Outcome(job.run_id, job.instance, job.attempt, "cancelled", None, "cancelled", now, now)
    finally:
        os.chdir(cwd)
    return dataclasses.replace(out, error=short_error(out.error))


def _recorder(report: Ticket | str) -> Any:
    if isinstance(report, Ticket):
        from conveyor.execution.client import ApiRecorder

        return ApiRecorder(report.api, report.token)
    rec = _recorders.get(report)
    if rec is None:
        from conveyor.recorder import Recorder

        rec = _recorders[report] = Recorder(report)
    return rec
