"""Team quotas in a scheduler: each turn, the ready attempts of its runs ask the policy, and those
it admits take their resources from the store's ledger before they may start.

The decisions are the pure policy's (``conveyor.quotas.policy``), made over the whole picture:
the holdings of every scheduler (the ledger), what the other schedulers have waiting (each
publishes its own), the teams' quotas and their decayed usage. The guarantee is the ledger's:
a take is one conditional transaction, so however many schedulers decide at once, none admits
past a team's limits (plus what it may borrow) or the cluster's capacity. A holding returns when
its attempt's end is in the store, whoever recorded it (``Ledger.sweep_holdings``), so a dead
scheduler's holdings return as its attempts end or are declared lost.

A run takes part when its team has a quota or the cluster has a capacity (the quota of team
``"*"``); other runs start as before. Why each waiting instance waits is written to the store
(``quota_waits``) for ``conveyor show``, the API and the UI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.core.states import State
from conveyor.errors import StoreError
from conveyor.quotas.model import Demand, Holding, TeamQuota
from conveyor.quotas.policy import Admission, admit
from conveyor.quotas.preemption import preempt
from conveyor.quotas.shares import denominator, dominant_share
from conveyor.quotas.usage import HALF_LIFE, Usage
from conveyor.quotas.why import FairShare, NoCapacity, Reason
from conveyor.store.ledger import CLUSTER, Held, Waiting

if TYPE_CHECKING:
    from conveyor.driver import RunDriver

log = logging.getLogger(__name__)

#: How often a scheduler asks (seconds): the quota picture is read, decided and written this often.
EVERY = 0.1
#: How often it re-reads the teams' quotas. (Each turn sweeps the holdings of ended attempts.)
QUOTAS_EVERY = 5.0
#: Another scheduler's waiting demands count while it refreshed them this recently.
FRESH = 10.0
#: At most this many of another scheduler's waiting attempts per team and user enter the picture.
OTHERS_SHOWN = 64


@dataclass
class _Asked:
    """What one driver's run asked last, to write reasons only when they change."""

    waits: dict[str, tuple[str, str]] = field(default_factory=dict)


class Gate:
    """Team quotas for one scheduler's drivers."""

    def __init__(self, store: Any, scheduler: str, *, half_life: float = HALF_LIFE) -> None:
        self.store = store
        self.scheduler = scheduler
        self.half_life = half_life
        self.quotas: dict[str, TeamQuota] = {}
        self.capacity: dict[str, int] | None = None
        self.preempt_after: float | None = None  # the cluster's: stop borrowed work for waiting lenders
        self._next = 0.0
        self._next_quotas = 0.0
        self._since: dict[str, float] = {}
        self._asked: dict[str, _Asked] = {}
        self._published: list[Waiting] | None = None
        self._published_at = 0.0

    def enter(self, d: RunDriver) -> None:
        """A driver just began: if its team has a quota, nothing of it starts without a grant."""
        try:
            if not self._next_quotas:
                self._next_quotas = 1.0  # read once now; ``turn`` re-reads on its own clock
                self._read_quotas()
        except StoreError as exc:
            log.warning("team quotas not read: store unreachable (%s)", exc)
        if self._gates(d):
            assert d.machine is not None
            d.machine.granted = set()

    def turn(self, drivers: Sequence[RunDriver], now: float) -> None:
        if now < self._next:
            return
        self._next = now + EVERY
        try:
            self._turn(drivers, now)
        except StoreError as exc:
            log.warning("team quotas not decided: store unreachable (%s)", exc)

    def _turn(self, drivers: Sequence[RunDriver], now: float) -> None:
        if now >= self._next_quotas:
            self._next_quotas = now + QUOTAS_EVERY
            self._read_quotas()
        gated = [d for d in drivers if self._gates(d)]
        for d in drivers:
            if d.machine is not None and d not in gated:
                d.machine.granted = None
        if not self.quotas and self.capacity is None:
            return  # no team has a quota: nothing to decide, nothing held
        self.store.sweep_holdings(now, charge=self._charge, half_life=self.half_life)
        mine = self._asking(gated, now)
        self._publish(gated, mine, now)
        others = self._others(now) if mine or self.preempt_after is not None else []
        if not mine and not others:  # nothing waits here (nor, for preemption, elsewhere)
            self._forget(gated)
            return
        demands = [m[1] for m in mine] + others
        holdings = [
            Holding(_key(h), h.team, h.user, h.run_id, h.amounts, h.borrowed, h.taken_at)
            for h in self.store.holdings()
        ]
        limited = any(q.runs is not None for q in self.quotas.values())
        open_runs = self.store.open_runs() if limited else {}
        decided = admit(demands, holdings, self.quotas, self.capacity, self._usage(now), open_runs)
        if self.preempt_after is not None:
            self._preempt(gated, holdings, demands, decided.waiting, now)
        granted, refused = self._grant(mine, decided, now)
        self._explain(gated, mine, decided, granted, refused, now)
        self._forget(gated)

    def _asking(self, gated: Sequence[RunDriver], now: float) -> list[tuple[RunDriver, Demand, int]]:
        """This scheduler's demands: the ready attempts its workers have room for, not yet granted."""
        mine: list[tuple[RunDriver, Demand, int]] = []
        for d in gated:
            machine = d.machine
            assert machine is not None
            if machine.granted is None:
                machine.granted = set()
            team, user = _team(d), _user(d)
            for iid in machine.asking:
                if iid in machine.granted:
                    continue
                inst = machine.instances[iid]
                attempt = inst.attempts + 1
                key = f"{d.run.id}/{iid}/{attempt}"
                since = self._since.setdefault(key, now)
                amounts = {k: v for k, v in inst.spec.resources.as_dict().items() if v}
                demand = Demand(key, team, user, d.run.id, amounts, inst.spec.priority, since)
                mine.append((d, demand, attempt))
        return mine

    def _grant(
        self, mine: Sequence[tuple[RunDriver, Demand, int]], decided: Admission, now: float
    ) -> tuple[set[str], dict[str, tuple[str, str]]]:
        """Take from the ledger what the policy admitted of this scheduler's demands; those the
        ledger gave start on their driver's next turn. Returns the keys granted, and why the
        ledger refused the others (another scheduler took the room first)."""
        by_key = {demand.key: (d, attempt) for d, demand, attempt in mine}
        granted: set[str] = set()
        refused: dict[str, tuple[str, str]] = {}
        for demand, borrowed in decided.admitted:
            found = by_key.get(demand.key)
            if found is None:
                continue  # another scheduler's: it takes it itself
            d, attempt = found
            iid = demand.key.split("/")[1]
            hold = Held(
                d.run.id,
                iid,
                attempt,
                demand.team,
                demand.user,
                demand.amounts,
                borrowed,
                self.scheduler,
                now,
            )
            if self.store.hold(hold, self._limits(demand.team), self.capacity):
                assert d.machine is not None and d.machine.granted is not None
                d.machine.granted.add(iid)
                granted.add(demand.key)
                self._since.pop(demand.key, None)
            else:
                refused[demand.key] = ("quota_full", f"team quota: team {demand.team}'s limits are in use")
        return granted, refused

    def _explain(
        self,
        gated: Sequence[RunDriver],
        mine: Sequence[tuple[RunDriver, Demand, int]],
        decided: Admission,
        granted: set[str],
        refused: Mapping[str, tuple[str, str]],
        now: float,
    ) -> None:
        """Write why each of this scheduler's demands waits, where the reason changed."""
        for d in gated:
            asked = self._asked.setdefault(d.run.id, _Asked())
            waits: dict[str, tuple[str, str]] = {}
            for dd, demand, _ in mine:
                if dd is not d or demand.key in granted:
                    continue
                iid = demand.key.split("/")[1]
                reason = decided.waiting.get(demand.key)
                if demand.key in refused:
                    waits[iid] = refused[demand.key]
                elif reason is not None:
                    waits[iid] = (reason.kind, reason.text())
            if waits != asked.waits:
                gone = [i for i in asked.waits if i not in waits]
                if gone:
                    self.store.clear_waits(d.run.id, gone)
                if waits:
                    self.store.set_waits(d.run.id, waits, now)
                asked.waits = waits

    def _preempt(
        self,
        gated: Sequence[RunDriver],
        holdings: Sequence[Holding],
        demands: Sequence[Demand],
        waiting: Mapping[str, Reason],
        now: float,
    ) -> None:
        """Stop this scheduler's attempts running on borrowed quota once a lender's work has
        waited ``preempt_after`` seconds for room (the cluster's setting)."""
        assert self.preempt_after is not None
        blocked = [d for d in demands if isinstance(waiting.get(d.key), NoCapacity | FairShare)]
        if not blocked:
            return
        victims = preempt(holdings, blocked, self.quotas, now, self.preempt_after)
        drivers = {d.run.id: d for d in gated}
        for key in victims:
            run_id, iid, number = key.rsplit("/", 2)
            d = drivers.get(run_id)
            if d is None:
                continue  # another scheduler's attempt: it stops it itself
            lenders = sorted({x.team for x in blocked if x.team != _team(d)})
            why = (
                f"preempted: team {_team(d)} ran on borrowed quota that team {', '.join(lenders)} waited for"
            )
            if d.preempt(iid, int(number), why):
                log.info("run %s: %s (%s)", run_id, why, iid)

    # -- the picture ------------------------------------------------------------------------------
    def _gates(self, d: RunDriver) -> bool:
        if d.machine is None or d.finished is not None:
            return False
        return self.capacity is not None or _team(d) in self.quotas

    def _read_quotas(self) -> None:
        rows = self.store.team_quota_rows()
        quotas = quotas_from(rows)
        self.capacity = None
        self.preempt_after = None
        if CLUSTER in quotas:
            self.capacity = dict(quotas.pop(CLUSTER).limits) or None
            grace = rows[CLUSTER][1].get("preempt_after")
            self.preempt_after = None if grace is None else float(grace)
        self.quotas = quotas

    def _limits(self, team: str) -> dict[str, int]:
        """The most the ledger lets the team hold: its limits plus what it may borrow (whether
        it may borrow now is the policy's call; this bounds it however schedulers race)."""
        quota = self.quotas.get(team)
        if quota is None:
            return {}
        return {r: n + quota.borrow.get(r, 0) for r, n in quota.limits.items()}

    def _others(self, now: float) -> list[Demand]:
        out = []
        for w in self.store.waiting(fresh_after=now - FRESH):
            if w.scheduler == self.scheduler:
                continue
            for k in range(min(w.waiting, OTHERS_SHOWN)):
                key = f"~{w.scheduler}/{w.team}/{w.user}/{k}"
                out.append(Demand(key, w.team, w.user, f"~{w.scheduler}", w.amounts, 0, w.oldest))
        return out

    def _usage(self, now: float) -> Usage:
        found = self.store.usage(now, self.half_life)
        teams = {t: v for (t, u), v in found.items() if u == ""}
        users = {(t, u): v for (t, u), v in found.items() if u != ""}
        return Usage(at=now, half_life=self.half_life, teams=teams, users=users)

    def _charge(self, held: Held, now: float) -> float:
        whole = denominator(self.capacity, self.quotas.values())
        return dominant_share(held.amounts, whole) * max(now - held.taken_at, 0.0)

    def _publish(
        self, gated: Sequence[RunDriver], mine: Sequence[tuple[RunDriver, Demand, int]], now: float
    ) -> None:
        """Tell the other schedulers what waits here: every ready instance of the gated runs not
        yet granted, also those its executor has no room for now, so that a team whose workers
        are busy keeps its place in the fair order (the others leave its share to it)."""
        first = {id(d): demand for d, demand, _ in reversed(mine)}
        rows: dict[tuple[str, str], Waiting] = {}
        for d in gated:
            machine = d.machine
            assert machine is not None and machine.granted is not None
            count = machine.counts[State.READY] - len(machine.granted)
            if count <= 0:
                continue
            demand = first.get(id(d))
            if demand is not None:
                amounts, since = demand.amounts, demand.since
            else:
                sample = machine.next_ready()
                if sample is None:
                    continue
                amounts, since = {k: v for k, v in sample.as_dict().items() if v}, now
            team, user = _team(d), _user(d)
            got = rows.get((team, user))
            if got is not None:
                count, since = count + got.waiting, min(since, got.oldest)
            rows[team, user] = Waiting(self.scheduler, team, user, count, amounts, since)
        listed = sorted(rows.values(), key=lambda w: (w.team, w.user))
        if listed == self._published and now - self._published_at < FRESH / 3:
            return
        self.store.publish_waiting(self.scheduler, listed, now)
        self._published, self._published_at = listed, now

    def _forget(self, gated: Sequence[RunDriver]) -> None:
        live = {d.run.id for d in gated}
        for run_id in [r for r in self._asked if r not in live]:
            asked = self._asked.pop(run_id)
            if asked.waits:
                self.store.clear_waits(run_id)
        prefixes = tuple(f"{r}/" for r in live)
        self._since = {k: v for k, v in self._since.items() if k.startswith(prefixes)}

    def close(self) -> None:
        """The scheduler stops: what its attempts that ended held returns now (not at the next
        scheduler's turn), and it has nothing waiting any more."""
        try:
            if self.quotas or self.capacity is not None:
                self.store.sweep_holdings(time.time(), charge=self._charge, half_life=self.half_life)
            self.store.publish_waiting(self.scheduler, [], 0.0)
        except StoreError:
            pass


def _team(d: RunDriver) -> str:
    return d.run.team or ""


def _user(d: RunDriver) -> str:
    return d.run.created_by or ""


def _key(h: Held) -> str:
    return f"{h.run_id}/{h.instance_id}/{h.attempt}"


def quotas_from(rows: Mapping[str, tuple[float, Mapping[str, Any]]]) -> dict[str, TeamQuota]:
    """Teams' quotas from their stored form: name -> (weight, {"limits", "runs", "borrow",
    "users"})."""
    out = {}
    for name, (weight, q) in rows.items():
        out[name] = TeamQuota(
            name,
            {k: int(v) for k, v in (q.get("limits") or {}).items()},
            q.get("runs"),
            float(weight),
            {k: int(v) for k, v in (q.get("borrow") or {}).items()},
            {k: float(v) for k, v in (q.get("users") or {}).items()},
        )
    return out
