"""Why a task instance waits, in one line: the answer ``conveyor show``, the API and the UI give.

The scheduler records the quota reasons as it decides (``Ledger.set_waits``); the rest follows
from the instance's state: upstream not done, a retry's backoff, or no room on the executor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.quotas.why import Backoff, Upstream

NO_ROOM = "no executor capacity: every worker is busy, or no scheduler has claimed it yet"


@dataclass(frozen=True, slots=True)
class Pending:
    kind: str
    text: str
    since: float | None = None


def why(
    state: str,
    upstream: list[str],
    not_before: float,
    states: Mapping[str, str],
    labels: Mapping[str, str],
    recorded: tuple[str, str, float] | None,
) -> Pending | None:
    """Why an instance in ``state`` waits (None: it does not wait). ``states`` and ``labels``:
    its run's instances by id; ``recorded``: the scheduler's reason, if it wrote one."""
    if state == "pending":
        names = tuple(labels.get(u, u) for u in upstream if states.get(u) not in ("succeeded", "skipped"))
        r = Upstream(names)
        return Pending(r.kind, r.text())
    if state == "retry_wait":
        b = Backoff(not_before)
        return Pending(b.kind, b.text())
    if state == "ready":
        if recorded is not None:
            return Pending(recorded[0], recorded[1], recorded[2])
        return Pending("no_executor", NO_ROOM)
    return None
