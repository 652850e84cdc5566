"""Job ads -> statuses, on job ads recorded from real schedds (ads/*.json say where each is from).

Each recorded ad is given the ``ConveyorAttempt`` attribute Conveyor's jobs carry; everything
else is as recorded. Each is read both as a plain dict and as the bindings' ``classad2.ClassAd``
(what ``Schedd.query`` returns).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conveyor.executors.htcondor.status import ATTRIBUTES, gone, job_id, status_of

ADS = Path(__file__).parent / "ads"
KEY = ("20261207-041622-2586b8", "b90fb96bb28ca53e", 1)


def recorded(name: str, **changes: Any) -> dict[str, Any]:
    ad = json.loads((ADS / f"{name}.json").read_text())["ad"]
    return {**ad, "ConveyorAttempt": "/".join(map(str, KEY)), **changes}


def forms(ad: dict[str, Any]) -> list[Any]:
    """The ad as a dict, and as the ClassAd the bindings hand back."""
    classad2 = pytest.importorskip("classad2")
    flat = {k: v for k, v in ad.items() if not isinstance(v, dict)}  # nested ads are not read
    return [ad, classad2.ClassAd(flat)]


def test_every_recorded_ad_has_a_source_and_the_attributes_read_are_queried() -> None:
    for path in ADS.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["source"] and data["ad"]["JobStatus"] in range(1, 8)
        read = {k for k in data["ad"] if k in ATTRIBUTES}
        assert read, path.name


def test_a_held_job_is_lost_with_htcondors_hold_reason_and_memory_named() -> None:
    for ad in forms(recorded("held_memory")):
        s = status_of(ad, "submit-1")
        assert s is not None and s.phase == "ended" and s.key == KEY
        assert s.reason == (
            "out of memory (held: Error from slot1_3@e301.chtc.wisc.edu: "
            "Docker job has gone over memory limit of 16384 Mb)"
        )
        assert not s.blameless  # it ran (NumJobStarts 1): it counts against the task


def test_a_hold_for_another_reason_says_held_and_before_any_start_is_blameless() -> None:
    ad = recorded("held_memory", HoldReasonCode=13, NumJobStarts=0, HoldReason="Transfer input files failure")
    s = status_of(ad, "submit-1")
    assert s is not None and (s.reason, s.blameless) == ("held: Transfer input files failure", True)


def test_a_job_held_while_its_input_spools_is_still_queued() -> None:
    ad = recorded("held_memory", HoldReasonCode=16, HoldReason="Spooling input data files", NumJobStarts=0)
    s = status_of(ad, "submit-1")
    assert s is not None and s.phase == "queued"
    assert s.where == "held in schedd submit-1 until submitted: Spooling input data files"


def test_a_running_job_says_its_slot() -> None:
    for ad in forms(recorded("running")):
        s = status_of(ad, "local")
        assert s is not None and (s.phase, s.where) == ("running", "running on slot1@fedora13vm0.localdomain")


def test_a_job_started_again_after_eviction_says_so() -> None:
    s = status_of(recorded("running_restarted"), "scosg16")
    assert s is not None and s.phase == "running"
    assert s.where == "running on glidein_11052_156649344@CRUSH-OSG-C7-10-5-219-52 (started 4 times)"


def test_an_idle_job_says_the_negotiators_reason_and_its_last_slot() -> None:
    # The recorded running ad, back in the queue (JobStatus 1): the state a job is in between an
    # eviction and its next start. Its LastRejMatchReason is the negotiator's, as recorded.
    s = status_of(recorded("running_restarted", JobStatus=1, RemoteHost=None), "scosg16")
    assert s is not None and s.phase == "queued"
    assert s.where == (
        "idle in schedd scosg16, queued again after 4 starts "
        "(last on slot1_6@glidein_99879_43933758@notch009.int.chpc.utah.edu): no match found"
    )
    fresh = {"ConveyorAttempt": "r/i/1", "JobStatus": 1, "NumJobStarts": 0}
    s = status_of(fresh, "local")
    assert s is not None and s.where == "idle in schedd local: waiting for a matching slot"


def test_a_completed_job_gives_its_exit_code_and_an_old_vacate_signal_is_not_its_death() -> None:
    s = status_of(recorded("completed_after_eviction"), "local")
    # ExitSignal 9 and "died on signal 9" are from the run the schedd vacated; this run exited 0.
    assert s is not None and (s.phase, s.exit_code, s.reason) == ("ended", 0, None)
    assert s.where == "ended on slot1_49@e2473.chtc.wisc.edu"


def test_a_job_killed_by_a_signal_is_lost_with_the_signal_and_by_sigkill_over_memory_as_oom() -> None:
    s = status_of(recorded("killed_by_signal"), "local")
    assert s is not None and (s.exit_code, s.reason) == (None, "killed by signal 15 (SIGTERM)")
    over = recorded("killed_by_signal", ExitSignal=9, MemoryUsage=49152)
    s = status_of(over, "local")
    assert s is not None and s.reason == "out of memory (used 49152 MiB of 49152 MiB)"


def test_removed_jobs_and_the_timeout_backstop() -> None:
    base = recorded("running", JobStatus=3)
    s = status_of({**base, "RemoveReason": "via condor_rm (by user fpierfed)"}, "local")
    assert s is not None and s.reason == "removed: via condor_rm (by user fpierfed)"
    why = "The job attribute PeriodicRemove expression '(JobStatus == 2)' evaluated to TRUE"
    s = status_of({**base, "RemoveReason": why}, "local")
    assert (
        s is not None and s.reason is not None and s.reason.startswith("removed by HTCondor at its timeout")
    )


def test_ads_of_other_jobs_are_not_ours() -> None:
    ad = json.loads((ADS / "running.json").read_text())["ad"]
    assert status_of(ad, "local") is None
    assert status_of({**ad, "ConveyorAttempt": "not/an-attempt"}, "local") is None
    assert job_id(ad) == "19.0"


def test_a_job_gone_from_queue_and_history_is_said_so() -> None:
    s = gone(KEY, "submit-1")
    assert s.phase == "ended" and s.reason is not None and "not in its queue nor its history" in s.reason
