"""What the Dask executor runs on the Dask scheduler and workers (pickled by reference, so
``conveyor`` must be installed there). Imported only where ``distributed`` is.

- ``Plugin``: installed on every worker (also those that join or restart later): it keeps the
  store's credentials out of the worker's environment and says when an attempt begins executing
  (its timeout counts from there; a worker that dies holding an attempt that never began is not
  the task's fault).
- ``interrupt``, ``executing``, ``die``: a cancel's steps, run with ``client.run`` on a worker.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

from distributed import get_worker
from distributed.diagnostics.plugin import WorkerPlugin

from conveyor.executors.dask import ENDED, SECRETS, STARTED
from conveyor.executors.port import Ticket
from conveyor.executors.remote import run_remote
from conveyor.runner import Cancelled, Job, Outcome


class Plugin(WorkerPlugin):
    idempotent = True

    def setup(self, worker: Any) -> None:
        self.worker = worker
        for name in SECRETS:
            os.environ.pop(name, None)

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and isinstance(key, str) and key.startswith("conveyor-"):
            self.worker.log_event(STARTED, (key, self.worker.address, time.time()))


def run(job: Job, report: Ticket | str) -> Outcome:
    """The runner, whose outcome also goes to the client with the task's end as an event: it
    arrives without a second round trip to fetch the task's result."""
    out = run_remote(job, report)
    worker = get_worker()
    key = worker.get_current_task()
    worker.log_event(ENDED, (key, [getattr(out, f) for f in Outcome.__dataclass_fields__]))
    return out


def allowed_failures(dask_scheduler: Any = None) -> int:
    return int(getattr(dask_scheduler, "allowed_failures", 0))


def interrupt(key: str, dask_worker: Any = None) -> str:
    """Raise ``Cancelled`` in the worker thread running ``key`` (it lands at the next bytecode):
    ``interrupted``; ``executing`` (its thread is not there yet: ask again), ``waiting`` or
    ``absent``."""
    for tid, running in list(dask_worker.active_threads.items()):
        if running == key:
            hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(Cancelled))
            if hit == 1:
                return "interrupted"
    task = dask_worker.state.tasks.get(key)
    if task is None:
        return "absent"
    return "executing" if task.state in ("executing", "long-running") else "waiting"


def executing(key: str, dask_worker: Any = None) -> bool:
    return key in set(dask_worker.active_threads.values())


async def die(dask_worker: Any = None) -> None:
    """Kill this worker's process; its nanny starts a new one (a coroutine:
    ``client.run(..., wait=False)`` needs one)."""
    os.kill(os.getpid(), signal.SIGKILL)
