"""A run with attempts started, as a driver leaves them in the store."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from conveyor.store import AttemptRecord, Batch, InstanceRecord, RunRecord, Store


@dataclass
class Started:
    """A run with attempts started by its driver, as the store holds them."""

    store: Store
    run_id: str
    epoch: int
    logs: Path

    def log_path(self, instance: str, number: int) -> Path:
        return self.logs / f"{instance}-{number}.log"

    def attempt(self, instance: str, number: int) -> AttemptRecord:
        return next(a for a in self.store.attempts(self.run_id, instance) if a.number == number)

    def again(self, instance: str, number: int) -> None:
        """The driver starts the instance's next attempt."""
        self.store.commit(
            self.run_id,
            self.epoch,
            Batch(
                instances=[{"id": instance, "state": "running", "attempts": number}],
                attempts_started=[
                    AttemptRecord(
                        self.run_id,
                        instance,
                        number,
                        "running",
                        time.time(),
                        log_path=str(self.log_path(instance, number)),
                    )
                ],
            ),
            lease_until=time.time() + 3600,
        )


def start_run(
    store: Store, logs: Path, instances: list[InstanceRecord] | None = None, run_id: str | None = None
) -> Started:
    """A run whose driver started attempt 1 of each of its instances (default: one, ``inst``)."""
    run_id = run_id or f"20261206-000000-{uuid.uuid4().hex[:6]}"
    instances = instances or [InstanceRecord(run_id, "inst", "t", "t()", {}, [])]
    store.create_run(
        RunRecord(
            id=run_id,
            pipeline="p",
            target="p.py:p",
            params={},
            key=run_id,
            state="pending",
            created_at=time.time(),
        ),
        instances,
    )
    epoch = store.acquire(run_id, "driver", 3600, now=time.time())
    started = Started(store, run_id, epoch, logs)
    for inst in instances:
        started.again(inst.id, 1)
    return started
