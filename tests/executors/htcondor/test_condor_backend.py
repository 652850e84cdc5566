"""The HTCondor executor end to end against a schedd stand-in, and against an unreachable one.

No schedd can run here. ``Schedd`` below stands in for ``htcondor2.Schedd`` at the boundary:
it keeps job ads as real ``classad2.ClassAd`` objects, and answers a query or a history lookup
by evaluating the executor's constraint with HTCondor's own ClassAd evaluator (so a constraint
that would match nothing on a real schedd matches nothing here). The job ads' states are set
as recorded ads show them (test_condor_status.py). The live test (test_condor_live.py) runs
against a real schedd when one is configured.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import ExecutorError
from conveyor.executors.htcondor import HTCondorExecutor
from conveyor.executors.port import Launch, Lost, Placed, Ticket, Unknown
from conveyor.resources import Resources
from conveyor.runner import Job

htcondor2 = pytest.importorskip("htcondor2", reason="pip install -e '.[htcondor]' (the test extra has it)")
classad2 = pytest.importorskip("classad2")

TOKEN = "tok-7d1e-secret"
ROOT = Path(__file__).parents[3]


class Schedd:
    """``htcondor2.Schedd``'s submit, query, act and history over ClassAds held in memory."""

    def __init__(self) -> None:
        self.queue: dict[str, Any] = {}
        self.history_ads: list[Any] = []
        self.actions: list[tuple[Any, str]] = []
        self.submitted: list[Any] = []
        self._next = 100

    def submit(self, description: Any) -> Any:
        assert isinstance(description, htcondor2.Submit)
        self.submitted.append(description)
        self._next += 1
        ad = classad2.ClassAd({"ClusterId": self._next, "ProcId": 0, "JobStatus": 1, "NumJobStarts": 0})
        for k in description:
            if k.startswith("MY."):
                ad[k[3:]] = classad2.ExprTree(description[k]).eval()
        self.queue[f"{self._next}.0"] = ad
        return htcondor2.SubmitResult(self._next, 0, 1, classad2.ClassAd(), None)

    def query(self, constraint: str, projection: list[str]) -> list[Any]:
        return [ad for ad in self.queue.values() if classad2.ExprTree(constraint).eval(ad) is True]

    def history(self, constraint: str, projection: list[str], match: int) -> list[Any]:
        return [ad for ad in self.history_ads if classad2.ExprTree(constraint).eval(ad) is True][:match]

    def act(self, action: Any, spec: str) -> None:
        self.actions.append((action, spec))

    def only(self) -> Any:
        (ad,) = self.queue.values()
        return ad

    def leave(self, **final: Any) -> None:
        """The job leaves the queue for the history, with its final attributes."""
        ad = self.queue.pop(next(iter(self.queue)))
        for k, v in final.items():
            ad[k] = v
        self.history_ads.append(ad)


def job(attempt: int = 1) -> Job:
    return Job("20261207-041622-2586b8", "b90fb96bb28ca53e", attempt, "l", "a", {}, "t.py:p", {})


def launch(**kw: Any) -> Launch:
    base: dict[str, Any] = dict(
        resources=Resources(cpu=2, memory=2**30), ticket=Ticket("http://api:8080", TOKEN)
    )
    base.update(kw)
    return Launch(**base)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[HTCondorExecutor, Schedd]:
    schedd = Schedd()
    settings = {"folder": str(tmp_path / "condor"), "poll": 0.01}
    return HTCondorExecutor(1, str(tmp_path / "logs"), settings=settings, schedd=schedd), schedd


def reports(executor: HTCondorExecutor) -> list[Any]:
    return list(executor.poll(0.05))


def test_a_submitted_attempt_carries_its_key_and_its_token_only_as_a_0600_file(setup: Any) -> None:
    executor, schedd = setup
    executor.submit(job(), launch(team="analytics"), 0.0)
    (desc,) = schedd.submitted
    assert desc["MY.ConveyorAttempt"] == '"20261207-041622-2586b8/b90fb96bb28ca53e/1"'
    assert desc["accounting_group"] == "group_analytics"
    assert (desc["request_cpus"], desc["request_memory"]) == ("2", "1024")
    assert not any(TOKEN in desc[k] for k in desc)
    token = Path(desc["transfer_input_files"])
    assert token.read_text() == TOKEN
    assert stat.S_IMODE(token.stat().st_mode) == 0o600


def test_where_it_waits_and_runs_is_placed_and_its_end_read_from_history(setup: Any) -> None:
    executor, schedd = setup
    executor.submit(job(), launch(), 0.0)
    ad = schedd.only()
    ad["LastRejMatchReason"] = "no match found "
    (placed,) = reports(executor)
    assert isinstance(placed, Placed) and placed.where == "idle in schedd local: no match found"
    ad["JobStatus"], ad["RemoteHost"], ad["NumJobStarts"] = 2, "slot1@fedora13vm0.localdomain", 1
    (placed,) = reports(executor)
    assert isinstance(placed, Placed) and placed.where == "running on slot1@fedora13vm0.localdomain"
    assert reports(executor) == []  # nothing changed: nothing said
    folder = Path(schedd.submitted[0]["transfer_input_files"]).parent
    schedd.leave(JobStatus=4, ExitCode=0, ExitBySignal=False)
    (ended,) = reports(executor)
    assert isinstance(ended, Unknown)  # the runner recorded how it ended: the store tells
    assert executor.running() == [] and not folder.exists()  # the token is gone with the job


def test_a_held_job_is_lost_with_its_hold_reason_and_removed_so_a_release_cannot_rerun_it(setup: Any) -> None:
    executor, schedd = setup
    executor.submit(job(), launch(), 0.0)
    ad = schedd.only()
    ad["JobStatus"], ad["NumJobStarts"], ad["HoldReasonCode"] = 5, 1, 34
    ad["HoldReason"] = (
        "Error from slot1_3@e301.chtc.wisc.edu: Docker job has gone over memory limit of 16384 Mb"
    )
    (lost,) = reports(executor)
    assert isinstance(lost, Lost) and lost.reason.startswith("out of memory (held: Error from slot1_3@")
    assert not lost.blameless
    assert schedd.actions == [(htcondor2.JobAction.Remove, "101.0")]
    ad["JobStatus"] = 3  # removed, still in the queue a moment: not reported, not removed again
    assert reports(executor) == []
    assert len(schedd.actions) == 1


def test_a_new_owner_adopts_the_jobs_the_schedd_holds_and_not_the_ended_ones(
    setup: Any, tmp_path: Path
) -> None:
    executor, schedd = setup
    executor.submit(job(1), launch(), 0.0)
    executor.submit(job(2), launch(), 0.0)
    first, second = schedd.queue.values()
    first["JobStatus"], first["RemoteHost"] = 2, "slot1@n1"
    second["JobStatus"], second["ExitCode"], second["ExitBySignal"] = 4, 0, False
    executor.detach()  # the owner goes away; its jobs stay in the schedd
    assert schedd.actions == []
    settings = {"folder": str(tmp_path / "condor"), "poll": 0.01}
    heir = HTCondorExecutor(1, str(tmp_path / "logs"), settings=settings, schedd=schedd)
    heir.adopt([job(1), job(2)])
    assert [j.attempt for j in heir.running()] == [1]
    (placed,) = reports(heir)
    assert isinstance(placed, Placed) and placed.where == "running on slot1@n1"
    heir.cancel(job(1).instance, 1, 5.0, 0.0)
    assert schedd.actions == [(htcondor2.JobAction.Remove, "101.0")]


def test_a_job_held_while_no_owner_watched_is_removed_by_the_next(setup: Any, tmp_path: Path) -> None:
    executor, schedd = setup
    executor.submit(job(1), launch(), 0.0)
    executor.detach()
    ad = schedd.only()
    ad["JobStatus"], ad["HoldReasonCode"], ad["HoldReason"] = 5, 13, "Transfer input files failure"
    settings = {"folder": str(tmp_path / "condor"), "poll": 0.01}
    heir = HTCondorExecutor(1, str(tmp_path / "logs"), settings=settings, schedd=schedd)
    heir.adopt([job(1)])
    assert heir.running() == []  # it ended: the store's heartbeats tell the driver it is lost
    assert reports(heir) == []
    assert schedd.actions == [(htcondor2.JobAction.Remove, "101.0")]  # no release can run it now


def test_a_schedd_that_refuses_the_job_loses_the_attempt_with_its_words(setup: Any) -> None:
    executor, schedd = setup

    def refuse(description: Any) -> Any:
        raise htcondor2.HTCondorException("Failed to submit: accounting group group_x does not exist")

    schedd.submit = refuse
    executor.submit(job(), launch(team="x"), 0.0)
    (lost,) = reports(executor)
    assert isinstance(lost, Lost) and lost.reason.endswith("accounting group group_x does not exist")


def test_an_unreachable_schedd_is_one_line_naming_it(tmp_path: Path) -> None:
    settings = {"collector": "127.0.0.1:1", "schedd": "submit.example"}
    with pytest.raises(ExecutorError) as err:
        HTCondorExecutor(1, str(tmp_path), settings=settings)
    said = str(err.value)
    assert said.startswith("HTCondor schedd submit.example (collector 127.0.0.1:1) cannot be reached:")
    assert "\n" not in said


def test_conveyor_run_on_an_unreachable_schedd_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CONVEYOR_HTCONDOR_COLLECTOR": "127.0.0.1:1",
        "CONVEYOR_HTCONDOR_SCHEDD": "submit.example",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", str(ROOT / "examples/sales/pipeline.py:daily_sales"),
         "--executor", "htcondor", "--db", f"sqlite:///{tmp_path}/c.db"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "HTCondor schedd submit.example (collector 127.0.0.1:1) cannot be reached" in lines[0]
    )
    assert "Traceback" not in proc.stderr


def test_a_resource_htcondor_cannot_name_is_refused_before_the_run(setup: Any) -> None:
    executor, _ = setup
    assert executor.check(Resources(cpu=2, custom={"licences": 1})) is None
    why = executor.check(Resources(custom={"fpga-x": 1}))
    assert why is not None and why.startswith("HTCondor cannot request a resource named 'fpga-x'")


def test_watching_never_holds_the_driver_longer_than_asked_and_spares_the_schedd(tmp_path: Path) -> None:
    import time

    schedd = Schedd()
    calls: list[str] = []
    query = schedd.query
    schedd.query = lambda c, p: calls.append(c) or query(c, p)  # type: ignore[func-returns-value]
    settings = {"folder": str(tmp_path / "condor"), "poll": 30}
    executor = HTCondorExecutor(1, str(tmp_path / "logs"), settings=settings, schedd=schedd)
    executor.submit(job(), launch(), 0.0)
    began = time.monotonic()
    assert len(list(executor.poll(0.2))) == 1  # placed: idle
    assert list(executor.poll(0.2)) == []
    assert time.monotonic() - began < 2.0
    assert len(calls) == 1  # one query per `poll` seconds, however often the driver asks


def test_a_schedd_that_stops_answering_mid_run_is_waited_for_not_failed(setup: Any) -> None:
    executor, schedd = setup
    executor.submit(job(), launch(), 0.0)
    assert len(reports(executor)) == 1
    answer = schedd.query

    def down(constraint: str, projection: list[str]) -> list[Any]:
        raise htcondor2.HTCondorException("Failed to connect to schedd")

    schedd.query = down
    assert reports(executor) == []
    assert [j.attempt for j in executor.running()] == [1]  # still held: its end will be reported
    schedd.query = answer
    ad = schedd.only()
    ad["JobStatus"], ad["RemoteHost"] = 2, "slot1@n1"
    (placed,) = reports(executor)
    assert isinstance(placed, Placed) and placed.where == "running on slot1@n1"
