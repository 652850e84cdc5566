"""Several executors behind one port: a run whose tasks name different executors (a Spark task in
a pipeline that runs on local workers) hands each attempt to the one its ``Launch`` names."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import ClassVar

from conveyor.executors.port import Executor, Launch, Lost, Placed, Report, Unknown
from conveyor.resources import Resources
from conveyor.runner import Job

#: How long ``poll`` sleeps between looks at its members when none has anything (seconds).
NAP = 0.005


class Executors:
    name: ClassVar[str] = "mux"

    def __init__(self, members: Mapping[str, Executor]) -> None:
        self.members = dict(members)
        self._where: dict[tuple[str, int], str] = {}

    @property
    def prefetch(self) -> int:
        return sum(m.prefetch for m in self.members.values() if m.quick)

    @property
    def quick(self) -> bool:
        return any(m.quick for m in self.members.values())

    @property
    def has_room(self) -> bool:
        return all(m.has_room for m in self.members.values())

    def check(self, resources: Resources) -> str | None:
        for m in self.members.values():
            why = m.check(resources)
            if why is not None:
                return why
        return None

    def submit(self, job: Job, launch: Launch, now: float) -> None:
        self._where[job.instance, job.attempt] = launch.executor
        self.members[launch.executor].submit(job, launch, now)

    def cancel(self, instance: str, attempt: int, grace: float, now: float) -> None:
        name = self._where.get((instance, attempt))
        for key, m in self.members.items():
            if name is None or key == name:  # an adopted attempt: whoever has it
                m.cancel(instance, attempt, grace, now)

    def adopt(self, jobs: Sequence[Job]) -> None:
        for m in self.members.values():
            m.adopt(jobs)

    def poll(self, timeout: float) -> Iterator[Report]:
        busy = [m for m in self.members.values() if m.running() or m.next_deadline() is not None]
        if len(busy) <= 1:  # one member has work (the usual case): wait on it alone
            only = busy[0] if busy else next(iter(self.members.values()))
            for report in only.poll(timeout):
                self._forget(report)
                yield report
            return
        deadline = time.monotonic() + timeout
        while True:
            got = False
            for m in self.members.values():
                for report in m.poll(0):
                    got = True
                    self._forget(report)
                    yield report
            left = deadline - time.monotonic()
            if got or left <= 0:
                return
            time.sleep(min(NAP, left))

    def _forget(self, report: Report) -> None:
        if isinstance(report, Placed):
            return  # it goes on
        job = report.job if isinstance(report, Lost | Unknown) else report
        self._where.pop((job.instance, job.attempt), None)

    def next_deadline(self) -> float | None:
        times = [t for m in self.members.values() if (t := m.next_deadline()) is not None]
        return min(times) if times else None

    def running(self) -> list[Job]:
        return [j for m in self.members.values() for j in m.running()]

    def drop(self, match: Callable[[Job], bool]) -> None:
        for m in self.members.values():
            m.drop(match)

    def detach(self) -> None:
        for m in self.members.values():
            m.detach()

    def close(self, *, kill: bool = False) -> None:
        for m in self.members.values():
            m.close(kill=kill)
