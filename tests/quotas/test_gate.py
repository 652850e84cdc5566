"""Team quotas and fair share for real: three teams with weights 1:1:2 saturate a shared
capacity through three schedulers on a real PostgreSQL. The cluster's capacity and each team's
quota hold at every moment sampled and over every attempt recorded, the measured shares come
within 5 points of the weights', and a waiting task says why."""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from conveyor.store.sql import SqlStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

WORK = """
    import time
    from conveyor import pipeline, task

    @task
    def work(i: int, team: str) -> int:
        time.sleep(0.5)
        return i

    @pipeline
    def load(team: str = "a", n: int = 30):
        for i in range(n):
            work(i, team)
"""

CAPACITY = 4
WEIGHTS = {"a": 1.0, "b": 1.0, "c": 2.0}


def _team_project(root: Path, team: str) -> Project:
    p = Project(root / team)
    p.root.mkdir(parents=True)
    p.write("pipes.py", WORK)
    p.write("conveyor.toml", f'[project]\nteam = "{team}"\npipelines = ["pipes.py"]\n')
    return p


def _epoch(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _runs(p: Project, url: str) -> list[dict[str, Any]]:
    return list(json.loads(p.cli("runs", "--json", "--db", url, check=True).stdout))


def test_three_teams_share_a_capacity_by_weight_across_three_schedulers(
    tmp_path: Path, postgres: Any
) -> None:
    url = str(postgres.create_database(f"fair_{uuid.uuid4().hex[:10]}"))
    teams = {t: _team_project(tmp_path, t) for t in WEIGHTS}
    admin = teams["a"]
    admin.cli("db", "upgrade", "--db", url, check=True)
    for team, weight in WEIGHTS.items():
        admin.cli("teams", "add", team, "--weight", str(weight), "--db", url, check=True)
        admin.cli("teams", "quota", team, "--cpu", "3", "--db", url, check=True)  # 3 each; 4 in all
    admin.cli("teams", "add", "*", "--db", url, check=True)
    admin.cli("teams", "quota", "*", "--cpu", str(CAPACITY), "--db", url, check=True)
    for team, p in teams.items():
        p.cli("submit", "pipes.py:load", "-p", f"team={team}", "--db", url, check=True)

    store = SqlStore(url)
    samples: list[dict[str, int]] = []
    keyed: list[tuple[float, set[tuple[str, str, int]]]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            held: dict[str, int] = defaultdict(int)
            hs = store.holdings()
            for h in hs:
                held[h.team] += h.amounts.get("cpu", 0)
            samples.append(dict(held))
            keyed.append((time.time(), {(h.run_id, h.instance_id, h.attempt) for h in hs}))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    scheds = [
        admin.popen("scheduler", "--db", url, "--name", f"s{k}", "--workers", "3", "--poll", "0.1")
        for k in range(3)
    ]
    sampler.start()
    try:
        deadline = time.time() + 180
        waiting_reasons: set[str] = set()
        while time.time() < deadline:
            runs = _runs(admin, url)
            for r in runs:
                if r["state"] == "running":
                    shown = json.loads(admin.cli("show", r["id"], "--json", "--db", url).stdout or "{}")
                    for t in shown.get("tasks", []):
                        if t["state"] == "ready" and t.get("why"):
                            waiting_reasons.add(t["why"]["kind"])
            if all(r["state"] in ("succeeded", "failed", "cancelled") for r in runs):
                break
            time.sleep(0.5)
    finally:
        stop.set()
        sampler.join()
        for s in scheds:
            s.send_signal(signal.SIGTERM)
        errs = [s.communicate(timeout=60)[1] for s in scheds]
    assert [r["state"] for r in runs] == ["succeeded"] * 3, errs
    assert "Traceback" not in "".join(errs)

    # the capacity and each team's quota held at every moment sampled ...
    assert samples and max(sum(s.values()) for s in samples) <= CAPACITY
    assert max(s.get(t, 0) for s in samples for t in WEIGHTS) <= 3
    # ... and over every attempt recorded: never more than CAPACITY running at once, and each
    # attempt's holding present at every moment sampled while it ran
    edges: list[tuple[float, int]] = []
    for r in runs:
        for t in json.loads(admin.cli("show", r["id"], "--json", "--db", url, check=True).stdout)["tasks"]:
            for a in t["attempt_log"]:
                began, ended = _epoch(a["started_at"]), _epoch(a["ended_at"])
                edges += [(began, 1), (ended, -1)]
                key = (r["id"], t["id"], a["number"])
                during = [held for at, held in keyed if began + 0.05 < at < ended - 0.05]
                assert all(key in held for held in during), f"{t['label']} ran without its holding"
    running = peak = 0
    for _, step in sorted(edges):
        running += step
        peak = max(peak, running)
    assert peak <= CAPACITY

    # the shares while all three teams had work waiting: within 5 points of 25/25/50
    busy = [s for s in samples if sum(s.values()) == CAPACITY and all(s.get(t, 0) for t in WEIGHTS)]
    assert len(busy) > 20, f"only {len(busy)} saturated samples"
    total = sum(sum(s.values()) for s in busy)
    shares = {t: sum(s.get(t, 0) for s in busy) / total for t in WEIGHTS}
    targets = {t: w / sum(WEIGHTS.values()) for t, w in WEIGHTS.items()}
    assert all(abs(shares[t] - targets[t]) <= 0.05 for t in WEIGHTS), (shares, targets)
    assert waiting_reasons & {"fair_share", "no_capacity", "quota_full"}, waiting_reasons
    assert store.holdings() == [] and store.in_use() == {}  # everything returned at the end
    store.close()


LONG_AND_SHORT = """
    import time
    from conveyor import pipeline, task

    @task
    def chew(i: int, seconds: float) -> int:
        time.sleep(seconds)
        return i

    @pipeline
    def load(n: int = 3, seconds: float = 8.0):
        for i in range(n):
            chew(i, seconds)
"""


def test_borrowed_work_is_preempted_once_a_lender_waited_and_runs_again_later(tmp_path: Path) -> None:
    teams = {}
    for team in ("a", "b"):
        p = Project(tmp_path / team)
        p.root.mkdir(parents=True)
        p.write("pipes.py", LONG_AND_SHORT)
        p.write("conveyor.toml", f'[project]\nteam = "{team}"\npipelines = ["pipes.py"]\n')
        teams[team] = p
    a, b = teams["a"], teams["b"]
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a.cli("teams", "add", "a", "--db", url, check=True)
    a.cli("teams", "quota", "a", "--cpu", "1", "--borrow", "cpu=2", "--db", url, check=True)
    a.cli("teams", "add", "b", "--db", url, check=True)
    a.cli("teams", "quota", "b", "--cpu", "2", "--db", url, check=True)
    a.cli("teams", "add", "*", "--db", url, check=True)
    a.cli("teams", "quota", "*", "--cpu", "3", "--preempt-after", "1", "--db", url, check=True)
    bad = a.cli("teams", "quota", "a", "--preempt-after", "1", "--db", url)
    assert bad.returncode == 2 and "give it to team '*'" in bad.stderr
    slow = a.cli("submit", "pipes.py:load", "--db", url, check=True).stdout.strip()
    scheds = [
        a.popen("scheduler", "--db", url, "--name", f"s{k}", "--workers", "3", "--poll", "0.1")
        for k in (1, 2)
    ]
    store = SqlStore(url)
    try:
        deadline = time.time() + 60
        while sum(h.amounts.get("cpu", 0) for h in store.holdings(team="a")) < 3 and time.time() < deadline:
            time.sleep(0.1)
        held = store.holdings(team="a")
        assert sum(h.borrowed.get("cpu", 0) for h in held) == 2  # b's idle quota, borrowed
        quick = b.cli("submit", "pipes.py:load", "-p", "n=2", "-p", "seconds=0.5", "--db", url, check=True)
        quick_id = quick.stdout.strip()
        submitted = time.time()
        while time.time() < deadline:
            state = json.loads(b.cli("show", quick_id, "--json", "--db", url, check=True).stdout)["state"]
            if state == "succeeded":
                break
            time.sleep(0.2)
        waited = time.time() - submitted
        assert state == "succeeded" and waited < 7, waited  # before a's 8 s attempts could have ended
        while time.time() < deadline + 60:
            shown = json.loads(a.cli("show", slow, "--json", "--db", url, check=True).stdout)
            if shown["state"] != "running":
                break
            time.sleep(0.3)
    finally:
        for s in scheds:
            s.send_signal(signal.SIGTERM)
        errs = [s.communicate(timeout=60)[1] for s in scheds]
        store.close()
    assert shown["state"] == "succeeded", errs  # the preempted tasks ran again, no retry used up
    tries = sorted(len(t["attempt_log"]) for t in shown["tasks"])
    assert tries == [1, 2, 2], tries  # two borrowed attempts stopped, then run again
    assert "preempted: team a ran on borrowed quota that team b waited for" in "".join(errs)
