"""Where an attempt is, from Job, pod and Workload objects recorded from real clusters
(fixtures/README.md names each one's source)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conveyor.executors.batch import Status
from conveyor.executors.kubernetes.manifests import KEY_ANNOTATION, QUEUE_LABEL
from conveyor.executors.kubernetes.status import Tracker, decide, of_job, of_pod, of_workload

FIXTURES = Path(__file__).parent / "fixtures"
KEY = ("run1", "abc123", 1)


def recorded(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def ours(obj: dict[str, Any], job_name: str = "cv-run1-abc123-1") -> dict[str, Any]:
    """A recorded object as if it were one of Conveyor's: its key annotation (the Workload: the
    owner reference Kueue gives it)."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    if obj.get("kind") == "Workload":
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": "u1"}]
    else:
        meta["name"] = job_name if obj.get("kind") == "Job" else f"{job_name}-x7k2p"
        meta.setdefault("annotations", {})[KEY_ANNOTATION] = "run1/abc123/1"
    return obj


def test_unschedulable_waits_with_the_schedulers_own_message() -> None:
    status = of_pod(KEY, recorded("pod-unschedulable"))
    assert status.phase == "queued"
    assert status.where.startswith("Unschedulable: 0/3 nodes are available: ")
    assert "2 Insufficient cpu" in status.where


@pytest.mark.parametrize("fixture", ["pod-container-creating", "pod-pod-initializing"])
def test_a_starting_container_is_not_an_error(fixture: str) -> None:
    status = of_pod(KEY, recorded(fixture))
    assert status.phase == "queued" and status.reason is None
    assert "starting" in status.where and "does-not-exist" in status.where  # the image it starts


def test_image_pull_backoff_ends_blameless_with_the_kubelets_message() -> None:
    status = of_pod(KEY, recorded("pod-imagepullbackoff"))
    assert status.phase == "ended" and status.blameless
    image = "gcr.io/heptio-images/ks-guestbook-demo:0.3"
    assert status.reason == f'ImagePullBackOff: Back-off pulling image "{image}"'


def test_err_image_pull_is_retried_before_it_is_given_up() -> None:
    pod = recorded("pod-imagepullbackoff")
    pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] = "ErrImagePull"
    status = of_pod(KEY, pod)
    assert status.phase == "queued"
    assert "pulling image gcr.io/heptio-images/ks-guestbook-demo:0.3" in status.where


def test_running_names_its_node() -> None:
    pod = recorded("pod-running")
    status = of_pod(KEY, pod)
    assert status.phase == "running"
    assert status.where == f"running on node {pod['spec']['nodeName']}"


def test_out_of_memory_names_the_limit() -> None:
    status = of_pod(KEY, recorded("pod-oomkilled"))
    assert status.phase == "ended"
    assert status.reason == "out of memory (limit 200Mi)"
    assert not status.blameless  # the task asked for too little: its retries count


def test_evicted_is_blameless_with_the_kubelets_reason() -> None:
    status = of_pod(KEY, recorded("pod-evicted"))
    assert status.phase == "ended" and status.blameless
    assert status.reason is not None
    assert status.reason.startswith("evicted: The node was low on resource: memory.")


def test_an_exit_code_is_left_to_the_runners_word() -> None:
    failed, succeeded = of_pod(KEY, recorded("pod-failed")), of_pod(KEY, recorded("pod-succeeded"))
    assert (failed.phase, failed.exit_code, failed.reason) == ("ended", 1, None)
    assert (succeeded.phase, succeeded.exit_code, succeeded.reason) == ("ended", 0, None)


def test_deadline_exceeded_wins_over_the_container_it_killed() -> None:
    status = decide(KEY, recorded("job-deadline-exceeded"), recorded("pod-failed"), None)
    assert status.phase == "ended"
    assert status.reason == "DeadlineExceeded: Job was active longer than specified deadline"


def test_a_failed_job_with_no_pod_seen_says_the_jobs_reason() -> None:
    status = decide(KEY, recorded("job-failed"), None, None)
    assert status.phase == "ended"
    assert status.reason == "BackoffLimitExceeded: Job has reached the specified backoff limit"
    assert decide(KEY, recorded("job-failed"), recorded("pod-failed"), None).exit_code == 1


def test_job_complete_and_running() -> None:
    assert decide(KEY, recorded("job-succeeded"), None, None).exit_code == 0
    assert decide(KEY, recorded("job-running"), None, None).phase == "queued"


def test_kueue_says_why_a_suspended_job_waits() -> None:
    job = recorded("job-suspended")
    job["spec"]["suspend"] = True
    job.setdefault("metadata", {}).setdefault("labels", {})[QUEUE_LABEL] = "team-a-queue"
    assert of_job(KEY, job) == Status(KEY, "queued", "queued in Kueue (team-a-queue): waiting for admission")
    workload = recorded("workload-pending")
    workload["spec"] = {"queueName": "team-a-queue"}
    status = decide(KEY, job, None, workload)
    assert status.where == (
        "queued in Kueue (team-a-queue): couldn't assign flavors to pod set main: "
        "insufficient quota for cpu in flavor default-flavor in ClusterQueue"
    )


@pytest.mark.parametrize(
    ("fixture", "says"),
    [
        ("workload-inadmissible", "LocalQueue user-queue doesn't exist"),
        ("workload-preempted", "preempted (Preempted to accommodate a higher priority Workload)"),
        ("workload-admission-checks", "quota reserved, waiting for admission checks dws-prov"),
    ],
)
def test_kueues_other_reasons(fixture: str, says: str) -> None:
    status = of_workload(KEY, recorded(fixture))
    assert status is not None and status.phase == "queued" and says in status.where


def test_an_admitted_workload_leaves_it_to_the_pod() -> None:
    assert of_workload(KEY, recorded("workload-admitted")) is None


def test_the_tracker_reports_each_change_once_along_a_recorded_life() -> None:
    tracker = Tracker()
    job = ours({**recorded("job-running"), "kind": "Job"})
    suspended = copy.deepcopy(job)
    suspended["spec"]["suspend"] = True
    suspended["metadata"].setdefault("labels", {})[QUEUE_LABEL] = "q"
    seen = [
        tracker.feed(suspended),
        tracker.feed(ours({**recorded("workload-pending"), "spec": {"queueName": "q"}})),
        tracker.feed(ours({**recorded("workload-pending"), "spec": {"queueName": "q"}})),  # the same again
        tracker.feed(job),
        tracker.feed(ours({**recorded("pod-container-creating"), "kind": "Pod"})),
        tracker.feed(ours({**recorded("pod-running"), "kind": "Pod"})),
        tracker.feed(ours({**recorded("pod-succeeded"), "kind": "Pod"})),
        tracker.feed(ours({**recorded("job-succeeded"), "kind": "Job"})),
    ]
    phases = [(s.phase, s.where.split(":")[0]) if s else None for s in seen]
    assert phases[:3] == [("queued", "queued in Kueue (q)"), ("queued", "queued in Kueue (q)"), None]
    assert phases[3] == ("queued", "created")
    assert [p[0] if p else None for p in phases[4:]] == ["queued", "running", "ended", None]
    assert tracker.status(KEY) is not None and tracker.status(KEY).exit_code == 0  # type: ignore[union-attr]


def test_a_pod_deleted_while_it_ran_ends_the_attempt_blameless() -> None:
    """Node loss: the pod of a lost node is deleted (the watch says DELETED) before it ended."""
    tracker = Tracker()
    tracker.feed(ours({**recorded("job-running"), "kind": "Job"}))
    running = ours({**recorded("pod-running"), "kind": "Pod"})
    assert tracker.feed(running) is not None
    status = tracker.feed(running, deleted=True)
    assert status is not None and status.phase == "ended" and status.blameless
    assert status.reason is not None and "deleted before it ended" in status.reason


def test_a_workload_seen_before_its_job_is_kept_for_it() -> None:
    """The Job and Workload watches run apart: either may deliver first."""
    tracker = Tracker()
    job = ours({**recorded("job-suspended"), "kind": "Job"})
    job["metadata"]["uid"] = "u1"
    job["spec"]["suspend"] = True
    assert tracker.feed(ours({**recorded("workload-pending"), "spec": {"queueName": "q"}})) is None
    status = tracker.feed(job)
    assert status is not None and status.where.startswith("queued in Kueue (q): couldn't assign flavors")
    other = {
        **recorded("workload-pending"),
        "metadata": {"ownerReferences": [{"kind": "Job", "name": "etl"}]},
    }
    assert tracker.feed(other) is None and "etl" not in tracker.orphans  # not ours: not kept
