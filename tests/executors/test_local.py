"""The local executor under load: quick attempts queued behind busy workers (prefetch) must
still run exactly once each, survive a dying worker, and never delay a timed attempt."""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import conveyor
from conftest import Project
from conveyor.executors.local import LocalExecutor
from conveyor.store import open_store

pytestmark = pytest.mark.timeout(120)

QUICK = """
    import os, time
    from conveyor import task, pipeline

    def effect(name):
        with open("effects.log", "a") as f:
            f.write(name + "\\n")

    @task
    def quick(i: int) -> None:
        effect(f"quick-{i}")

    @task
    def dies(i: int) -> None:
        effect(f"dies-{i}")
        if not os.path.exists(f"died-{i}"):
            open(f"died-{i}", "w").close()
            os._exit(9)

    @task(timeout=0.3)
    def sleepy() -> None:
        time.sleep(30)

    @pipeline
    def busy(n: int = 400, with_timeout: bool = False):
        for i in range(n):
            quick(i)
            if i % 100 == 50:
                dies(i)
        if with_timeout:
            sleepy()
"""


def effects(root: Path) -> collections.Counter[str]:
    return collections.Counter((root / "effects.log").read_text().split())


def test_queued_attempts_run_once_even_when_a_worker_dies(project: Project) -> None:
    project.write("busy.py", QUICK)
    result = conveyor.run("busy.py:busy", db=project.db, workers=2)
    assert result.state == "succeeded", result.failed
    counts = effects(project.root)
    quick = {k: v for k, v in counts.items() if k.startswith("quick-")}
    assert len(quick) == 400 and set(quick.values()) == {1}, "a quick task ran twice or never"
    assert {k: v for k, v in counts.items() if k.startswith("dies-")} == {
        "dies-50": 2,
        "dies-150": 2,
        "dies-250": 2,
        "dies-350": 2,
    }
    store = open_store(project.db)
    lost = [i for i in store.instances(result.run_id) if i.lost]
    assert sorted(i.task for i in lost) == ["dies"] * 4


def test_a_timed_attempt_is_not_held_behind_quick_ones(project: Project) -> None:
    project.write("busy.py", QUICK)
    started = time.time()
    result = conveyor.run("busy.py:busy", {"n": 300, "with_timeout": True}, db=project.db, workers=2)
    assert result.state == "failed"
    assert [label for label, _ in result.failed] == ["sleepy()"]
    assert "timed out after 0.3s" in result.failed[0][1]
    assert result.counts["succeeded"] == 303  # 300 quick and 3 dies (each after one lost attempt)
    assert time.time() - started < 30


def test_ctrl_c_with_queued_attempts_runs_nothing_after_the_cancel(project: Project) -> None:
    project.write("busy.py", QUICK.replace('effect(f"quick-{i}")', 'effect(f"quick-{i}"); time.sleep(0.002)'))
    proc = project.popen("run", "busy.py:busy", "-p", "n=3000", "--workers", "2")
    deadline = time.time() + 30
    while not (project.root / "effects.log").exists() or len(effects(project.root)) < 50:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    time.sleep(0.3)
    counts = effects(project.root)
    store = open_store(project.db)
    (run,) = store.list_runs()
    states = {i.label: i.state for i in store.instances(run.id)}
    assert run.state == "cancelled"
    ran = {k for k in counts if k.startswith("quick-")}
    succeeded = {
        f"quick-{label[len('quick(i=') : -1]}"
        for label, s in states.items()
        if s == "succeeded" and label.startswith("quick(")
    }
    assert succeeded <= ran
    assert len(ran - succeeded) <= 2, "attempts kept starting after the cancel"
    assert set(counts.values()) == {1}


BIG = """
    from conveyor import task, pipeline

    @task
    def quick(i: int) -> None:
        pass

    @task
    def loud(i: int) -> None:
        raise ValueError("x" * 300_000)

    @pipeline
    def big(blob: str = "", n: int = 200):
        for i in range(n):
            quick(i)
            if i % 20 == 10:
                loud(i)
"""


@pytest.mark.timeout(30)
def test_big_parameters_and_big_errors_do_not_deadlock_the_pipes(project: Project) -> None:
    # Found in review: a 200 KB parameter travelling with every job, sent while a worker wrote a
    # 300 KB error back, left both ends blocked writing to each other.
    project.write("big.py", BIG)
    result = conveyor.run("big.py:big", {"blob": "y" * 200_000}, db=project.db, workers=2)
    assert result.state == "failed" and result.counts["succeeded"] == 200
    store = open_store(project.db)
    loud = next(i for i in store.instances(result.run_id) if i.task == "loud")
    assert loud.error is not None and loud.error.startswith(
        "[... cut: the whole text is in the attempt's log"
    )
    log = Path(store.attempts(result.run_id, loud.id)[0].log_path or "").read_text()
    assert "x" * 300_000 in log


JITTERY = """
    import time
    from conveyor import task, pipeline

    @task
    def step(i: int) -> None:
        # Quick on average, so attempts queue behind busy workers; every tenth long enough that
        # what is queued behind it is taken back and sent elsewhere.
        time.sleep(0.025 if i % 10 == 0 else 0.002)
        with open("effects.log", "a") as f:
            f.write(f"step-{i}\\n")

    @pipeline
    def jittery(n: int = 1000):
        for i in range(n):
            step(i)
"""


def test_attempts_taken_back_and_sent_elsewhere_run_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Taken-back attempts wait in the pool while later ones are sent; a worker must still get
    # its jobs in increasing order, or it runs one that was taken back (and so twice).
    sent: dict[int, list[int]] = collections.defaultdict(list)
    send = LocalExecutor._send

    def recording(self: LocalExecutor, w: Any, slot: Any, now: float, *, queued: bool) -> None:
        send(self, w, slot, now, queued=queued)
        sent[w.index].append(slot.seq)

    monkeypatch.setattr(LocalExecutor, "_send", recording)
    project.write("jittery.py", JITTERY)
    result = conveyor.run("jittery.py:jittery", db=project.db, workers=2)
    assert result.state == "succeeded", result.failed
    assert sum(map(len, sent.values())) > 1000  # some attempts were taken back and sent again
    for seqs in sent.values():
        assert seqs == sorted(set(seqs)), "a worker got its jobs out of order"
    counts = effects(project.root)
    assert sorted(counts) == sorted(f"step-{i}" for i in range(1000))
    assert [name for name, n in counts.items() if n > 1] == []
