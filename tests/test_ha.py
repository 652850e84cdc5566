"""Several schedulers on one PostgreSQL store, for real: a scheduler SIGKILLed mid-run, the
database stopped mid-run, a scheduler paused past its lease. Each time the run ends on its own,
no task is lost, and no task whose completion was recorded runs again.

Each task appends one line naming itself to a side-effect file, so the file says what ran and
how often; the store says what was recorded. A line seen twice is allowed only for an attempt
that was never recorded as succeeded (at-least-once for attempts cut short), never for a task
after its success was recorded.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from conveyor.errors import StaleEpochError, StoreError
from conveyor.store import Batch, Store, open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PIPELINE = """
    import time
    from conveyor import pipeline, task

    def effect(line):
        with open({side!r}, "a") as f:
            f.write(line + "\\n")

    @task
    def work(i: int, delay: float = 0.0) -> int:
        time.sleep(delay)
        effect(f"work-{{i}}")
        return i

    @task
    def total(g: int) -> int:
        effect(f"total-{{g}}")
        return g

    @pipeline
    def wide(n: int = 100, groups: int = 4, delay: float = 0.02):
        per = n // groups
        for g in range(groups):
            total(g, after=[work(g * per + k, delay) for k in range(per)])
"""
DEADLINE = 120.0


class Cluster:
    """A project, its own database, a submitted run and the scheduler processes driving it."""

    def __init__(self, project: Project, postgres: Any) -> None:
        self.project = project
        self.postgres = postgres
        self.database = f"ha_{uuid.uuid4().hex[:10]}"
        self.url = postgres.create_database(self.database)
        self.side = project.root / "effects.log"
        project.write("wide.py", PIPELINE.format(side=str(self.side)))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.store: Store = open_store(self.url)
        self.run_id = ""

    # -- processes ----------------------------------------------------------------------------
    def submit(self, *, n: int, groups: int, delay: float, partition_size: int) -> str:
        proc = self.project.cli(
            "submit",
            "wide.py:wide",
            *("-p", f"n={n}", "-p", f"groups={groups}", "-p", f"delay={delay}"),
            *("--partition-size", str(partition_size), "--db", self.url),
            check=True,
        )
        self.run_id = proc.stdout.strip()
        return self.run_id

    def scheduler(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        command = ["scheduler", "--db", self.url, "--name", name, "--workers", "2", *extra]
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *command],
                cwd=self.project.root,
                env=self.project.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.project.root / f"scheduler-{name}.log"

    def log(self, name: str) -> str:
        path = self.log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- scheduler {name} ---\n{self.log(name)}" for name in self.procs)

    def stop_all(self) -> None:
        """Teardown: stop every scheduler this test started (SIGCONT first: one may be paused)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.store.close()

    # -- observing ----------------------------------------------------------------------------
    def effects(self) -> collections.Counter[str]:
        text = self.side.read_text() if self.side.exists() else ""
        return collections.Counter(text.split())

    def lines(self) -> int:
        return self.side.read_bytes().count(b"\n") if self.side.exists() else 0

    def sessions(self) -> str:
        """What the database's sessions are doing (a stalled scheduler's open transaction holds
        the row locks it took)."""
        import psycopg

        dsn = f"host=127.0.0.1 port={self.postgres.port} user=postgres dbname={self.database}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, application_name, state, now() - state_change, wait_event, left(query, 90)"
                " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        return "\n".join(map(str, rows))

    def wait_for(
        self,
        what: str,
        ready: Callable[[], Any],
        timeout: float = DEADLINE,
        explain: Callable[[], str] | None = None,
    ) -> Any:
        """Poll ``ready()`` until it returns something truthy; fail with the logs after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = ready()
            except StoreError:  # the test's own reads while the database is down
                got = None
            if got:
                return got
            if time.monotonic() > deadline:
                why = f"\n{explain()}" if explain else ""
                pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{why}\n{self.logs()}")
            time.sleep(0.02)

    def wait_for_lines(self, count: int) -> None:
        self.wait_for(f"{count} side-effect lines", lambda: self.lines() >= count)

    def wait_for_end(self) -> str:
        def ended() -> str | None:
            state = self.store.get_run(self.run_id).state
            return state if state in ("succeeded", "failed", "cancelled") else None

        return str(self.wait_for(f"run {self.run_id} to end", ended))

    def busy_partition(self, at_least: int) -> tuple[str, int, int]:
        """Wait for a scheduler holding an open partition with ``at_least`` tasks left to do;
        return (its name, the partition, its epoch). So many tasks take far longer than the
        moment between this read and the test's signal: the partition is still its own then."""

        def find() -> tuple[str, int, int] | None:
            left = collections.Counter(
                i.partition for i in self.store.instances(self.run_id) if i.state != "succeeded"
            )
            held = [
                p
                for p in self.store.partitions(self.run_id)
                if p.state == "open" and p.owner in self.procs and left[p.number] >= at_least
            ]
            if not held:
                return None
            p = max(held, key=lambda p: left[p.number])
            assert p.owner is not None
            return p.owner, p.number, p.epoch

        return self.wait_for(f"a scheduler holding a partition with {at_least} tasks to do", find)

    def partition(self, number: int) -> Any:
        return next(p for p in self.store.partitions(self.run_id) if p.number == number)

    # -- the checks -------------------------------------------------------------------------------
    def check_every_task_ran_and_none_ran_again(self) -> list[str]:
        """Every task succeeded and left its line; a line seen more than once only for an attempt
        that was cut short (lost, never recorded as succeeded). Returns those justified repeats."""
        instances = self.store.instances(self.run_id)
        states = collections.Counter(i.state for i in instances)
        assert set(states) == {"succeeded"}, f"instance states {dict(states)}\n{self.logs()}"
        attempts: dict[str, list[Any]] = collections.defaultdict(list)
        for a in self.store.attempts(self.run_id):
            attempts[a.instance_id].append(a)
        counts = self.effects()
        expected = {f"{i.task}-{i.params.get('i', i.params.get('g'))}": i for i in instances}
        assert set(counts) == set(expected), (
            f"lost: {sorted(set(expected) - set(counts))[:20]}, "
            f"unknown: {sorted(set(counts) - set(expected))[:20]}"
        )
        repeats = []
        for line, inst in expected.items():
            tries = sorted(attempts[inst.id], key=lambda a: a.number)
            succeeded = [a.number for a in tries if a.state == "succeeded"]
            assert succeeded == [tries[-1].number], (
                f"{line}: attempts {[(a.number, a.state) for a in tries]}: exactly one succeeded, the last"
            )
            if counts[line] > 1:
                # Ran again: only allowed after an attempt that was cut short, one line per attempt.
                assert counts[line] <= len(tries), (
                    f"{line} ran {counts[line]} times in {len(tries)} attempts "
                    f"{[(a.number, a.state, a.error) for a in tries]}"
                )
                repeats.append(f"{line} x{counts[line]}: {[(a.number, a.state) for a in tries]}")
        return repeats


@pytest.fixture
def cluster(project: Project, postgres: Any) -> Iterator[Cluster]:
    c = Cluster(project, postgres)
    try:
        yield c
    finally:
        c.stop_all()


@pytest.mark.parametrize("kill_at", [0.1, 0.45, 0.8])
def test_sigkill_of_a_scheduler_mid_run_loses_nothing(cluster: Cluster, kill_at: float) -> None:
    run_id = cluster.submit(n=500, groups=5, delay=0.02, partition_size=101)
    assert [p.size for p in cluster.store.partitions(run_id)] == [101] * 5
    for k in (1, 2, 3):
        cluster.scheduler(f"s{k}")
    cluster.wait_for_lines(int(505 * kill_at))
    victim, number, epoch = cluster.busy_partition(at_least=15)
    cluster.procs[victim].kill()  # SIGKILL the scheduler only: its workers finish their attempt
    assert cluster.procs[victim].wait(timeout=10) == -signal.SIGKILL

    assert cluster.wait_for_end() == "succeeded", cluster.logs()
    print("justified repeats:", cluster.check_every_task_ran_and_none_ran_again())
    part = cluster.partition(number)
    assert part.state == "done" and part.epoch > epoch
    assert part.takeovers >= 1 and part.taken_from == victim, part
    assert part.owner is None
    survivors = [name for name in cluster.procs if name != victim]
    assert any(
        f"partition {number} (101 tasks): took over from {victim}" in cluster.log(s) for s in survivors
    )
    shown = json.loads(cluster.project.cli("show", run_id, "--json", "--db", cluster.url, check=True).stdout)
    assert shown["state"] == "succeeded"
    assert {p["number"]: (p["takeovers"], p["taken_from"]) for p in shown["partition_states"]}[number] == (
        part.takeovers,
        victim,
    )
    for name in survivors:
        assert cluster.procs[name].poll() is None, f"scheduler {name} exited\n{cluster.logs()}"


def test_a_dead_schedulers_partition_is_taken_over_within_3s_while_every_survivor_is_busy(
    cluster: Cluster,
) -> None:
    """Every scheduler drives a long partition with all its workers busy; one is killed. A
    survivor takes the dead one's partition over beside its own, within 3 s of the lease's
    expiry (busy or not, a scheduler claims a dead scheduler's partition every poll)."""
    cluster.scheduler("s1")
    cluster.scheduler("s2")
    cluster.scheduler("s3")
    for name in ("s1", "s2", "s3"):
        cluster.wait_for(f"{name} to start", lambda name=name: "started" in cluster.log(name))
    run_id = cluster.submit(n=48, groups=3, delay=1.5, partition_size=17)

    def all_busy() -> dict[int, Any] | None:
        parts = {p.number: p for p in cluster.store.partitions(run_id)}
        owners = {p.owner for p in parts.values() if p.state == "open"}
        return parts if owners == {"s1", "s2", "s3"} and cluster.lines() >= 2 else None

    parts = cluster.wait_for("each scheduler to drive a partition", all_busy, timeout=60)
    victim = "s2"
    number = next(n for n, p in parts.items() if p.owner == victim)
    epoch = parts[number].epoch
    cluster.procs[victim].kill()
    killed = time.time()
    assert cluster.procs[victim].wait(timeout=10) == -signal.SIGKILL
    expiry = cluster.partition(number).lease_expires  # the dead renew nothing: its last expiry

    taken = cluster.wait_for(
        f"partition {number} to be taken over", lambda: (p := cluster.partition(number)).epoch > epoch and p
    )
    assert taken.taken_from == victim and taken.owner in ("s1", "s3"), taken
    survivor = taken.owner
    held = [p.number for p in cluster.store.partitions(run_id) if p.owner == survivor and p.state == "open"]
    print(
        f"takeover of partition {number}: {taken.taken_at - expiry:.2f}s after the lease expired, "
        f"{taken.taken_at - killed:.2f}s after the kill; {survivor} drives partitions {held}"
    )
    assert taken.taken_at - expiry < 3.0, cluster.logs()
    assert len(held) >= 2, f"{survivor} should drive its own partition and the dead one's: {held}"
    assert cluster.wait_for_end() == "succeeded", cluster.logs()
    print("justified repeats:", cluster.check_every_task_ran_and_none_ran_again())
    firsts = [
        a.started_at
        for a in cluster.store.attempts(run_id)
        if a.started_at > taken.taken_at
        and a.instance_id in {i.id for i in cluster.store.instances(run_id) if i.partition == number}
    ]
    if firsts:
        print(f"first attempt started by the new owner: {min(firsts) - taken.taken_at:.2f}s after its claim")


def test_postgres_stopped_mid_run_schedulers_reconnect(cluster: Cluster, postgres: Any) -> None:
    cluster.submit(n=300, groups=3, delay=0.02, partition_size=101)
    for k in (1, 2):
        cluster.scheduler(f"s{k}")
    cluster.wait_for_lines(int(303 * 0.3))
    stopped = False
    try:
        postgres.stop()
        stopped = True
        time.sleep(3.5)  # the outage: every scheduler's commit and renewal fails meanwhile
    finally:
        postgres.start()  # the server is shared with the rest of the session
    assert stopped

    assert cluster.wait_for_end() == "succeeded", cluster.logs()
    print("justified repeats:", cluster.check_every_task_ran_and_none_ran_again())
    for name, proc in cluster.procs.items():
        log = cluster.log(name)
        assert proc.poll() is None, f"scheduler {name} exited\n{log}"
        assert "store unreachable" in log, log
        assert "Traceback" not in log, log


def test_a_paused_scheduler_loses_its_lease_and_its_writes_are_refused(cluster: Cluster) -> None:
    run_id = cluster.submit(n=300, groups=3, delay=0.02, partition_size=101)
    for k in (1, 2):
        cluster.scheduler(f"s{k}", "--lease", "1.0")
    cluster.wait_for_lines(30)
    paused, number, epoch = cluster.busy_partition(at_least=30)
    proc = cluster.procs[paused]
    proc.send_signal(signal.SIGSTOP)
    try:
        taken = cluster.wait_for(
            f"partition {number} to be taken over from the paused {paused}",
            lambda: (p := cluster.partition(number)).epoch > epoch and p,
            timeout=30,
            explain=lambda: f"{cluster.partition(number)}\ndatabase sessions:\n{cluster.sessions()}",
        )
        assert taken.takeovers >= 1 and taken.taken_from == paused
        # The paused scheduler's epoch no longer fences anything: a write with it is refused.
        with pytest.raises(StaleEpochError, match="was taken over by another scheduler"):
            cluster.store.commit(run_id, epoch, Batch(), lease_until=time.time() + 60, partition=number)
    finally:
        resumed_at = time.time()
        proc.send_signal(signal.SIGCONT)

    stale = f"run {run_id} partition {number}: the lease (epoch {epoch}) was taken over by another scheduler"
    cluster.wait_for(f"{paused} to find its lease taken over", lambda: stale in cluster.log(paused))
    assert cluster.wait_for_end() == "succeeded", cluster.logs()
    print("justified repeats:", cluster.check_every_task_ran_and_none_ran_again())
    part = cluster.partition(number)
    assert part.state == "done" and part.takeovers >= 1 and part.taken_from == paused

    def listed() -> dict[str, Any] | None:
        out = cluster.project.cli("schedulers", "--json", "--db", cluster.url, check=True).stdout
        me = next(s for s in json.loads(out) if s["name"] == paused)
        beat = dt.datetime.fromisoformat(me["heartbeat"]).timestamp()
        return me if beat > resumed_at + 0.5 else None

    # It keeps serving: alive, and beating in the registry after it found its lease gone.
    me = cluster.wait_for(f"{paused} to beat again", listed, timeout=30)
    assert me["state"] == "running" and me["leases"] == []
    assert proc.poll() is None, cluster.log(paused)
    assert "Traceback" not in cluster.log(paused)


def test_an_idle_scheduler_keeps_its_first_claim_after_a_postgres_restart(
    cluster: Cluster, postgres: Any
) -> None:
    """The connection a scheduler keeps for its hot path outlives a database restart unseen:
    the first partition claimed afterwards must not be dropped on it."""
    first = cluster.submit(n=4, groups=1, delay=0.0, partition_size=10)
    cluster.scheduler("s1")
    assert cluster.wait_for_end() == "succeeded", cluster.logs()
    stopped = False
    try:
        postgres.stop()
        stopped = True
        time.sleep(6.0)  # long enough for a doubling backoff to reach several seconds
    finally:
        postgres.start()
    returned = time.time()
    assert stopped
    cluster.store.close()  # the test's own connections died with the server
    cluster.store = open_store(cluster.url)
    # An idle scheduler is back within a second of the database, whatever its backoff reached.
    again = cluster.wait_for(
        "s1 to reach the store again", lambda: _logged_at(cluster.log("s1"), "reachable again")
    )
    print(f"s1 reached the store {again - returned:.2f}s after the database came back")
    assert again - returned < 1.5, cluster.log("s1")
    second = cluster.submit(n=4, groups=1, delay=0.0, partition_size=10)
    assert second != first
    assert cluster.wait_for_end() == "succeeded", cluster.logs()
    ended = time.time()
    [part] = cluster.store.partitions(second)
    print(f"second run claimed {part.started_at - returned:.2f}s after the database came back")
    assert part.epoch == 1 and part.takeovers == 0, f"{part}\n{cluster.logs()}"
    assert "its lease will expire" not in cluster.log("s1"), cluster.log("s1")
    assert ended - returned < 5, cluster.logs()


def _logged_at(log: str, text: str) -> float | None:
    """When a scheduler logged the last line containing ``text`` (its clock is ours)."""
    lines = [line for line in log.splitlines() if text in line]
    if not lines:
        return None
    stamp, ms = lines[-1][:23].split(",")
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(ms) / 1000
