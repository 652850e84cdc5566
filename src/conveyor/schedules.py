"""Cron schedules of pipelines: which logical times are due. Pure: the clock comes in as ``now``.

    @pipeline(schedule="0 10 * * *", timezone="Europe/Berlin", catchup=False)
    def daily(logical_date: date): ...

A schedule's ticks are the cron expression's times in its time zone (croniter), as UTC epoch
seconds. The scheduler daemon keeps a cursor per pipeline in the store (the last tick it fired)
and fires the ticks after it that are due, exactly once across several schedulers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conveyor.errors import DefinitionError

#: After downtime, a schedule with ``catchup=True`` fires at most this many missed ticks (the
#: latest ones); a longer gap is a backfill's job.
MAX_CATCHUP = 100


@dataclass(frozen=True, slots=True)
class Schedule:
    cron: str
    timezone: str = "UTC"
    catchup: bool = False

    @classmethod
    def parse(cls, cron: str, timezone: str, catchup: bool, owner: str) -> Schedule:
        """A checked schedule; a bad expression or zone is a ``DefinitionError`` quoting it."""
        from croniter import croniter  # only for scheduled pipelines: not on every start

        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise DefinitionError(
                f"{owner}: schedule {cron!r} is not a cron expression; write five fields like "
                "'0 10 * * *' (minute hour day month weekday)"
            )
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise DefinitionError(
                f"{owner}: timezone {timezone!r} is not a time zone; use a name like 'Europe/Berlin' or 'UTC'"
            ) from None
        return cls(cron, timezone, bool(catchup))

    def ticks(self, after: float, until: float, limit: int = MAX_CATCHUP) -> list[float]:
        """The ticks in (``after``, ``until``], the latest ``limit`` of them, oldest first."""
        from croniter import croniter

        it = croniter(self.cron, dt.datetime.fromtimestamp(after, ZoneInfo(self.timezone)))
        out: list[float] = []
        while True:
            t = it.get_next(dt.datetime).timestamp()
            if t > until:
                return out
            out.append(t)
            if len(out) > limit:
                del out[0]

    def next_tick(self, after: float) -> float:
        """The first tick after ``after``."""
        from croniter import croniter

        it = croniter(self.cron, dt.datetime.fromtimestamp(after, ZoneInfo(self.timezone)))
        return float(it.get_next(dt.datetime).timestamp())

    def due(self, last: float, now: float) -> list[float]:
        """The ticks to fire now, the cursor being at ``last``: every missed one (bounded) with
        ``catchup``, else only the latest."""
        missed = self.ticks(last, now)
        return missed if self.catchup else missed[-1:]

    def describe(self) -> str:
        return f"{self.cron} ({self.timezone}{', catchup' if self.catchup else ''})"


def logical(t: float, timezone: str) -> dt.datetime:
    """A tick as an aware datetime in the schedule's zone: the run's logical time."""
    return dt.datetime.fromtimestamp(t, ZoneInfo(timezone))
