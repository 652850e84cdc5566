"""The Dask worker plugin the Dask executor installs on every worker (also on workers that join
or restart later): it keeps the store's credentials out of the worker's environment and says
when an attempt begins executing (its timeout counts from there; a worker that dies holding an
attempt that never began is not the task's fault). Imported only where ``distributed`` is."""

from __future__ import annotations

import os
import time
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from conveyor.executors.dask import SECRETS, STARTED


class Plugin(WorkerPlugin):
    idempotent = True

    def setup(self, worker: Any) -> None:
        self.worker = worker
        for name in SECRETS:
            os.environ.pop(name, None)

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing" and isinstance(key, str) and key.startswith("conveyor-"):
            self.worker.log_event(STARTED, (key, self.worker.address, time.time()))
