"""The quota ledger: what admitted attempts hold of their teams' quotas, taken and returned with
conditional updates so that no number of schedulers admits past a limit (``conveyor.quotas``).

A holding is one row per attempt; ``quota_use`` keeps the sums per team and resource (team
``"*"``: the cluster). Taking inserts the row and raises each sum only where it stays within its
limit, all in one transaction: one sum that would pass its limit rolls the whole take back.
Returning deletes the row first and lowers the sums only if it was there, so a holding returns
exactly once, whoever returns it: the scheduler that took it when its attempt ends, or any
scheduler's ``sweep_holdings`` once the attempt's end is in the store (its scheduler may be dead).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from conveyor.store import schema as t
from conveyor.store.part import Part

#: The ledger of the whole cluster's capacity, beside the teams'.
CLUSTER = "*"


@dataclass(frozen=True, slots=True)
class Held:
    """One attempt's holding."""

    run_id: str
    instance_id: str
    attempt: int
    team: str
    user: str
    amounts: Mapping[str, int]
    borrowed: Mapping[str, int] = field(default_factory=dict)
    scheduler: str = ""
    taken_at: float = 0.0
    ledgers: tuple[str, ...] = ()  # where it is counted: its team's ledger, the cluster's

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run_id, self.instance_id, self.attempt)


@dataclass(frozen=True, slots=True)
class Waiting:
    """What one scheduler has waiting for quota, for one team and user."""

    scheduler: str
    team: str
    user: str
    waiting: int
    amounts: Mapping[str, int]
    oldest: float


_ENSURE = sa.text(
    "INSERT INTO quota_use (team, resource, in_use) VALUES (:team, :resource, 0) "
    "ON CONFLICT (team, resource) DO NOTHING"
)
_RAISE = sa.text(
    "UPDATE quota_use SET in_use = in_use + :n WHERE team = :team AND resource = :resource "
    "AND in_use + :n <= :limit"
)
_ADD = sa.text("UPDATE quota_use SET in_use = in_use + :n WHERE team = :team AND resource = :resource")
_HOLD = sa.text(
    'INSERT INTO quota_holdings (run_id, instance_id, attempt, team, "user", amounts, borrowed, '
    "ledgers, scheduler, taken_at) VALUES (:run_id, :instance_id, :attempt, :team, :user, :amounts, "
    ":borrowed, :ledgers, :scheduler, :taken_at) ON CONFLICT (run_id, instance_id, attempt) DO NOTHING"
)
_ENDED = sa.text(
    "SELECT h.run_id, h.instance_id, h.attempt FROM quota_holdings AS h LEFT JOIN attempts AS a "
    "ON a.run_id = h.run_id AND a.instance_id = h.instance_id AND a.number = h.attempt "
    "WHERE (a.state IS NOT NULL AND a.state != 'running') OR (a.state IS NULL AND h.taken_at < :cut)"
)
_USAGE = sa.text(
    'INSERT INTO team_usage (team, "user", usage, updated_at) VALUES (:team, :user, :add, :now) '
    'ON CONFLICT (team, "user") DO UPDATE SET '
    "usage = team_usage.usage * :decay + :add, updated_at = :now"
)


class Rollback(Exception):
    """A take that would pass a limit: undo the whole transaction."""


class Ledger(Part):
    """Mixed into ``SqlStore``."""

    def hold(self, held: Held, limits: Mapping[str, int], capacity: Mapping[str, int] | None = None) -> bool:
        """Hold ``held.amounts`` in its team's ledger within ``limits`` (a resource not named is
        only counted), and in the cluster's within ``capacity`` when given. True if held now (or
        already was: taking twice holds once); False, holding nothing, if one sum would pass its
        limit."""
        bounds = {held.team: limits, **({CLUSTER: capacity} if capacity is not None else {})}
        try:
            with self._tx() as conn:
                row = _row(held)
                row["ledgers"] = json.dumps(sorted(bounds))
                if conn.execute(_HOLD, row).rowcount != 1:
                    return True
                for ledger in sorted(bounds):  # one order everywhere: no deadlock between takers
                    for resource in sorted(held.amounts):
                        n = held.amounts[resource]
                        if n <= 0:
                            continue
                        params = {"team": ledger, "resource": resource, "n": n}
                        conn.execute(_ENSURE, params)
                        limit = bounds[ledger].get(resource)
                        if limit is None:
                            conn.execute(_ADD, params)
                        elif conn.execute(_RAISE, {**params, "limit": limit}).rowcount != 1:
                            raise Rollback()
                return True
        except Rollback:
            return False

    def give_back(
        self,
        keys: Sequence[tuple[str, str, int]],
        now: float,
        charge: Callable[[Held, float], float] | None = None,
        half_life: float = 3600.0,
    ) -> int:
        """Return the holdings of these attempts (those still held); ``charge(held, now)``: the
        usage each adds to its team's and user's decayed usage. How many returned."""
        returned = 0
        for key in keys:
            with self._tx() as conn:
                held = _delete(conn, key)
                if held is None:
                    continue
                returned += 1
                for ledger in held.ledgers:
                    for resource, n in held.amounts.items():
                        if n > 0:
                            conn.execute(_ADD, {"team": ledger, "resource": resource, "n": -n})
                if charge is not None:
                    add = charge(held, now)
                    for user in ("", held.user):
                        decay = _decay(conn, held.team, user, now, half_life)
                        conn.execute(
                            _USAGE, {"team": held.team, "user": user, "add": add, "now": now, "decay": decay}
                        )
        return returned

    def sweep_holdings(
        self,
        now: float,
        *,
        unused_after: float = 60.0,
        charge: Callable[[Held, float], float] | None = None,
        half_life: float = 3600.0,
    ) -> int:
        """Return the holdings whose attempts ended (whoever recorded the end), and those whose
        attempt was never recorded ``unused_after`` seconds after they were taken (the scheduler
        that took one died before launching it). How many returned."""
        with self._tx() as conn:
            keys = [
                (str(r[0]), str(r[1]), int(r[2])) for r in conn.execute(_ENDED, {"cut": now - unused_after})
            ]
        return self.give_back(keys, now, charge, half_life) if keys else 0

    def holdings(self, team: str | None = None) -> list[Held]:
        h = t.quota_holdings
        query = sa.select(h).order_by(h.c.taken_at)
        if team is not None:
            query = query.where(h.c.team == team)
        with self._tx() as conn:
            return [_held(r) for r in conn.execute(query).mappings()]

    def in_use(self) -> dict[str, dict[str, int]]:
        """The sums: ledger (a team, ``CLUSTER``) -> resource -> amount held."""
        u = t.quota_use
        out: dict[str, dict[str, int]] = {}
        with self._tx() as conn:
            for team, resource, n in conn.execute(sa.select(u.c.team, u.c.resource, u.c.in_use)):
                if n:
                    out.setdefault(str(team), {})[str(resource)] = int(n)
        return out

    def team_quota_rows(self) -> dict[str, tuple[float, dict[str, Any]]]:
        """Each team's weight and quota as stored (``conveyor teams quota``): name -> (weight,
        {"limits": ..., "runs": ..., "borrow": ..., "users": ...}); team ``"*"`` is the cluster."""
        tm = t.teams
        with self._tx() as conn:
            rows = conn.execute(sa.select(tm.c.name, tm.c.weight, tm.c.quota)).all()
        return {
            str(r[0]): (float(r[1]), json.loads(r[2] or "{}")) for r in rows if r[2] not in (None, "", "{}")
        }

    def open_runs(self) -> dict[str, set[str]]:
        """Per team, its unfinished runs that have started work (an attempt recorded): what a
        team's limit on runs at once counts."""
        r, a = t.runs, t.attempts
        started = sa.exists().where(a.c.run_id == r.c.id)
        query = sa.select(r.c.team, r.c.id).where(r.c.state == "running", r.c.team.is_not(None), started)
        out: dict[str, set[str]] = {}
        with self._tx() as conn:
            for team, run_id in conn.execute(query):
                out.setdefault(str(team), set()).add(str(run_id))
        return out

    # -- the schedulers' waiting demands --------------------------------------------------------
    def publish_waiting(self, scheduler: str, rows: Sequence[Waiting], now: float) -> None:
        """Replace what ``scheduler`` has waiting for quota."""
        d = t.quota_demands
        with self._tx() as conn:
            conn.execute(d.delete().where(d.c.scheduler == scheduler))
            if rows:
                conn.execute(
                    d.insert(),
                    [
                        {
                            "scheduler": scheduler,
                            "team": w.team,
                            "user": w.user,
                            "waiting": w.waiting,
                            "amounts": json.dumps(dict(w.amounts), sort_keys=True),
                            "oldest": w.oldest,
                            "updated_at": now,
                        }
                        for w in rows
                    ],
                )

    def waiting(self, fresh_after: float) -> list[Waiting]:
        """What every scheduler that refreshed it since ``fresh_after`` has waiting."""
        d = t.quota_demands
        query = sa.select(d).where(d.c.updated_at >= fresh_after)
        with self._tx() as conn:
            return [
                Waiting(
                    str(r["scheduler"]),
                    str(r["team"]),
                    str(r["user"]),
                    int(r["waiting"]),
                    json.loads(r["amounts"]),
                    float(r["oldest"]),
                )
                for r in conn.execute(query).mappings()
            ]

    # -- why instances wait ---------------------------------------------------------------------
    def set_waits(self, run_id: str, waits: Mapping[str, tuple[str, str]], now: float) -> None:
        """Record why these instances of ``run_id`` wait (kind, one-line text); a reason that
        did not change keeps its ``since``."""
        w = t.quota_waits
        with self._tx() as conn:
            known = {
                str(r[0]): (str(r[1]), str(r[2]))
                for r in conn.execute(
                    sa.select(w.c.instance_id, w.c.kind, w.c.text).where(
                        w.c.run_id == run_id, w.c.instance_id.in_(list(waits))
                    )
                )
            }
            for iid, (kind, text) in waits.items():
                if known.get(iid) == (kind, text):
                    continue
                if iid in known:
                    conn.execute(
                        w.update()
                        .where(w.c.run_id == run_id, w.c.instance_id == iid)
                        .values(kind=kind, text=text, since=now)
                    )
                else:
                    conn.execute(
                        w.insert().values(run_id=run_id, instance_id=iid, kind=kind, text=text, since=now)
                    )

    def clear_waits(self, run_id: str, instances: Sequence[str] | None = None) -> None:
        """Forget why these instances (all of the run's: None) waited."""
        w = t.quota_waits
        query = w.delete().where(w.c.run_id == run_id)
        if instances is not None:
            if not instances:
                return
            query = query.where(w.c.instance_id.in_(list(instances)))
        with self._tx() as conn:
            conn.execute(query)

    def waits(self, run_id: str) -> dict[str, tuple[str, str, float]]:
        """Why the run's instances wait: instance id -> (kind, text, since)."""
        w = t.quota_waits
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(w.c.instance_id, w.c.kind, w.c.text, w.c.since).where(w.c.run_id == run_id)
            )
            return {str(r[0]): (str(r[1]), str(r[2]), float(r[3])) for r in rows}

    # -- decayed usage --------------------------------------------------------------------------
    def usage(self, now: float, half_life: float = 3600.0) -> dict[tuple[str, str], float]:
        """Each team's (user "") and user's usage, decayed to ``now``."""
        u = t.team_usage
        with self._tx() as conn:
            rows = conn.execute(sa.select(u.c.team, u.c.user, u.c.usage, u.c.updated_at)).all()
        return {
            (str(r[0]), str(r[1])): float(r[2]) * 0.5 ** (max(now - float(r[3]), 0.0) / half_life)
            for r in rows
        }


def _row(held: Held) -> dict[str, Any]:
    return {
        "run_id": held.run_id,
        "instance_id": held.instance_id,
        "attempt": held.attempt,
        "team": held.team,
        "user": held.user,
        "amounts": json.dumps(dict(held.amounts), sort_keys=True),
        "borrowed": json.dumps(dict(held.borrowed), sort_keys=True),
        "ledgers": json.dumps(list(held.ledgers)),
        "scheduler": held.scheduler,
        "taken_at": held.taken_at,
    }


def _held(r: Any) -> Held:
    return Held(
        str(r["run_id"]),
        str(r["instance_id"]),
        int(str(r["attempt"])),
        str(r["team"]),
        str(r["user"]),
        json.loads(str(r["amounts"])),
        json.loads(str(r["borrowed"])),
        str(r["scheduler"]),
        float(str(r["taken_at"])),
        tuple(json.loads(str(r["ledgers"]))),
    )


def _delete(conn: Connection, key: tuple[str, str, int]) -> Held | None:
    h = t.quota_holdings
    where = sa.and_(h.c.run_id == key[0], h.c.instance_id == key[1], h.c.attempt == key[2])
    row = conn.execute(sa.select(h).where(where)).mappings().first()
    if row is None or conn.execute(h.delete().where(where)).rowcount != 1:
        return None
    return _held(row)


def _decay(conn: Connection, team: str, user: str, now: float, half_life: float) -> float:
    u = t.team_usage
    row = conn.execute(sa.select(u.c.updated_at).where(u.c.team == team, u.c.user == user)).first()
    return 1.0 if row is None else 0.5 ** (max(now - float(row[0]), 0.0) / half_life)
