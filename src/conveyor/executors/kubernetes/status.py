"""Where an attempt's Job is, from the objects the API sends: Jobs, their pods, Kueue Workloads.

Pure: no client, no clock. The backend feeds each watch event's object (the API's JSON, as a
dict) to a ``Tracker``, which keeps the latest Job, pod and Workload of each attempt and says
when the attempt's ``Status`` changed. Reading the structured fields (conditions, container
states, reasons) and never the printed STATUS column is what keeps an attempt from hanging on a
state nobody parsed: every way a Job ends maps to an ended Status with the cluster's reason.

| what the API says | Status |
| --- | --- |
| Job suspended, Workload ``QuotaReserved`` False | queued: "queued in Kueue (queue): <Kueue's message>" |
| pod ``PodScheduled`` False, reason Unschedulable | queued: "Unschedulable: <the scheduler's message>" |
| container waiting: ContainerCreating, PodInitializing | queued: "starting on node N (...)": not an error |
| container waiting: ErrImagePull | queued: "pulling image X failed, retrying: ..." |
| container waiting: ImagePullBackOff, InvalidImageName, CreateContainerConfigError, ... | ended, blameless |
| pod Running | running: "running on node N" |
| container terminated OOMKilled | ended: "out of memory (limit N MiB)" |
| pod reason Evicted, condition DisruptionTarget | ended, blameless: "evicted: ..." / "disrupted: ..." |
| Job condition Failed, reason DeadlineExceeded | ended: "DeadlineExceeded: <message>" |
| Job Complete / Failed otherwise | ended with the container's exit code (the runner's word) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.executors.batch import Key, Status
from conveyor.executors.kubernetes.manifests import QUEUE_LABEL, key_of

Obj = Mapping[str, Any]
#: The label Kueue gives a Workload: its Job's uid (Kueue copies no other label unless configured).
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"

#: Waiting reasons after which the container will never start on its own: the attempt ends
#: (blameless: the task never ran). ErrImagePull is the first failed pull; the kubelet retries,
#: then says ImagePullBackOff.
NEVER_STARTS = frozenset(
    {
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
#: Waiting reasons of a container on its way up.
STARTING = frozenset({"ContainerCreating", "PodInitializing"})


def _conditions(obj: Obj) -> dict[str, Obj]:
    return {c.get("type", ""): c for c in (obj.get("status") or {}).get("conditions") or []}


def _true(cond: Obj | None) -> bool:
    return cond is not None and cond.get("status") == "True"


def _line(text: Any) -> str:
    return " ".join(str(text or "").split())


def _said(reason: Any, message: Any) -> str:
    return f"{reason}: {_line(message)}" if _line(message) else str(reason)


def _container(pod: Obj) -> Obj:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _memory_limit(pod: Obj) -> str | None:
    for c in (pod.get("spec") or {}).get("containers") or []:
        limit = ((c.get("resources") or {}).get("limits") or {}).get("memory")
        if limit:
            return str(limit)
    return None


def _node(pod: Obj) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


def of_job(key: Key, job: Obj) -> Status | None:
    """The Job's own word: ended (Complete, Failed, DeadlineExceeded) or suspended; None when
    its pod tells more."""
    conds = _conditions(job)
    for kind in ("Failed", "FailureTarget"):
        cond = conds.get(kind)
        if _true(cond):
            assert cond is not None
            reason = cond.get("reason") or "Failed"
            if reason == "DeadlineExceeded":
                return Status(
                    key, "ended", "ended: deadline exceeded", reason=_said(reason, cond.get("message"))
                )
            # the pod, when seen, says more (out of memory, evicted, its exit code)
            return Status(key, "ended", f"ended: {reason}", reason=_said(reason, cond.get("message")))
    for kind in ("Complete", "SuccessCriteriaMet"):
        if _true(conds.get(kind)):
            return Status(key, "ended", "ended: complete", exit_code=0)
    if (job.get("spec") or {}).get("suspend"):
        queue = ((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)
        where = f"queued in Kueue ({queue})" if queue else "suspended"
        return Status(key, "queued", f"{where}: waiting for admission")
    return None


def of_workload(key: Key, workload: Obj) -> Status | None:
    """Kueue's word on a Job it holds back: why its Workload has no quota reserved."""
    conds = _conditions(workload)
    queue = (workload.get("spec") or {}).get("queueName") or "?"
    if _true(conds.get("Finished")):
        return None
    reserved = conds.get("QuotaReserved")
    if reserved is not None and reserved.get("status") == "False":
        evicted = conds.get("Evicted")
        prefix = f"preempted ({_line(evicted.get('message'))}); " if _true(evicted) and evicted else ""
        message = _line(reserved.get("message")) or reserved.get("reason") or "pending"
        return Status(key, "queued", f"queued in Kueue ({queue}): {prefix}{message}")
    if _true(reserved) and not _true(conds.get("Admitted")):
        checks = [c.get("name") for c in (workload.get("status") or {}).get("admissionChecks") or []]
        waiting = f"admission checks {', '.join(map(str, checks))}" if checks else "admission"
        return Status(key, "queued", f"queued in Kueue ({queue}): quota reserved, waiting for {waiting}")
    return None


def of_pod(key: Key, pod: Obj) -> Status:
    """Where the pod is: unschedulable, starting, pulling, running, or how it ended."""
    status = pod.get("status") or {}
    conds = _conditions(pod)
    node = _node(pod)
    on = f" on node {node}" if node else ""
    if status.get("reason") == "Evicted":
        return Status(
            key, "ended", f"evicted{on}", reason=f"evicted: {_line(status.get('message'))}", blameless=True
        )
    c = _container(pod)
    state = c.get("state") or {}
    # lastState: a container restarted in place (a restartPolicy other than Conveyor's Never) ended
    # once already: the attempt ended then, whatever ran after
    done = state.get("terminated") or (c.get("lastState") or {}).get("terminated")
    if done:
        code = done.get("exitCode")
        if done.get("reason") == "OOMKilled":
            limit = _memory_limit(pod)
            why = f"out of memory (limit {limit})" if limit else "out of memory"
            return Status(key, "ended", f"out of memory{on}", exit_code=code, reason=why)
        disrupted = conds.get("DisruptionTarget")
        if _true(disrupted) and disrupted and code != 0:
            reason = f"disrupted: {_said(disrupted.get('reason'), disrupted.get('message'))}"
            return Status(key, "ended", f"disrupted{on}", exit_code=code, reason=reason, blameless=True)
        return Status(key, "ended", f"exited {code}{on}", exit_code=code)
    if status.get("phase") in ("Failed", "Succeeded"):  # ended with no container state (deleted, lost)
        disrupted = conds.get("DisruptionTarget")
        if _true(disrupted) and disrupted:
            reason = f"disrupted: {_said(disrupted.get('reason'), disrupted.get('message'))}"
        else:
            reason = _said(status.get("reason") or status.get("phase"), status.get("message"))
        return Status(key, "ended", f"ended{on}", reason=reason, blameless=True)
    waiting = state.get("waiting")
    if waiting:
        why = waiting.get("reason") or "Waiting"
        image = c.get("image") or ""
        if why in NEVER_STARTS:
            return Status(
                key, "ended", f"{why}{on}", reason=_said(why, waiting.get("message")), blameless=True
            )
        if why == "ErrImagePull":
            return Status(
                key, "queued", f"pulling image {image}{on} failed, retrying: {_line(waiting.get('message'))}"
            )
        return Status(
            key, "queued", f"starting{on} ({why}, image {image})" if why in STARTING else f"{why}{on}"
        )
    if state.get("running"):
        return Status(key, "running", f"running{on}")
    scheduled = conds.get("PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return Status(
            key, "queued", _said(scheduled.get("reason") or "Unschedulable", scheduled.get("message"))
        )
    if status.get("phase") == "Running":
        return Status(key, "running", f"running{on}")
    return Status(key, "queued", f"starting{on}" if node else "waiting to be scheduled")


def decide(key: Key, job: Obj | None, pod: Obj | None, workload: Obj | None) -> Status:
    """One attempt's Status from its latest Job, pod and Workload (any may be unseen yet).

    The pod tells how an ended Job ended (out of memory, evicted, its exit code); the Job tells
    a deadline and completion; Kueue tells why a suspended Job waits."""
    by_job = of_job(key, job) if job is not None else None
    by_pod = of_pod(key, pod) if pod is not None else None
    if by_job is not None and by_job.phase == "ended":
        if by_job.reason and by_job.reason.startswith("DeadlineExceeded"):
            return by_job  # the Job's reason wins over the container it killed
        if by_pod is not None and by_pod.phase == "ended":
            return by_pod
        return by_job
    if by_pod is not None:
        return by_pod
    held = job is None or bool((job.get("spec") or {}).get("suspend"))  # unsuspended: Kueue admitted it
    if workload is not None and held:
        by_wl = of_workload(key, workload)
        if by_wl is not None:
            return by_wl
    if by_job is not None:
        return by_job
    return Status(key, "queued", "created: waiting for its pod")


@dataclass(slots=True)
class _Seen:
    job: Obj | None = None
    pod: Obj | None = None
    workload: Obj | None = None
    last: Status | None = None


@dataclass(slots=True)
class Tracker:
    """The latest objects of every attempt seen, and the last Status each was reported with."""

    seen: dict[Key, _Seen] = field(default_factory=dict)
    by_job_name: dict[str, Key] = field(default_factory=dict)
    by_job_uid: dict[str, Key] = field(default_factory=dict)
    ran: set[Key] = field(default_factory=set)  # attempts seen running at least once
    orphans: dict[str, Obj] = field(default_factory=dict)  # Workloads whose Job is not seen yet

    def feed(self, obj: Obj, deleted: bool = False) -> Status | None:
        """Take one object (a watch event's, or one listed); the attempt's Status if it changed."""
        kind = obj.get("kind") or ""
        meta = obj.get("metadata") or {}
        key = key_of(obj)
        if key is None and kind == "Workload":  # Kueue's: owned by the Job, labelled with its uid
            key = self._owner(obj)
        if key is None:
            return None
        entry = self.seen.setdefault(key, _Seen())
        if kind == "Job":
            name, uid = str(meta.get("name")), str(meta.get("uid") or "")
            self.by_job_name[name] = key
            if uid:
                self.by_job_uid[uid] = key
            entry.job = obj
            early = self.orphans.pop(uid, None) or self.orphans.pop(name, None)
            if early is not None and entry.workload is None:  # its Workload was seen first
                entry.workload = early
        elif kind == "Workload":
            entry.workload = obj
        else:
            if deleted and (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                obj = _lost(obj)  # a pod deleted before it ended: its node went away, or someone
            entry.pod = obj
        now = decide(key, entry.job, entry.pod, entry.workload)
        if now == entry.last:
            return None
        entry.last = now
        if now.phase == "running":
            self.ran.add(key)
        return now

    def _owner(self, workload: Obj) -> Key | None:
        """The attempt whose Job owns ``workload``; a Workload of a Job of ours (``cv-...``) not
        seen yet is kept until its Job is (the watches of Jobs and Workloads run apart)."""
        meta = workload.get("metadata") or {}
        ids = [str((meta.get("labels") or {}).get(JOB_UID_LABEL) or "")]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("kind") == "Job"]
        ids += [str(r.get(f) or "") for r in refs for f in ("uid", "name")]
        for found in ids:
            key = self.by_job_uid.get(found) or self.by_job_name.get(found)
            if key is not None:
                return key
        if any(str(r.get("name", "")).startswith("cv-") for r in refs):
            for found in filter(None, ids):
                self.orphans[found] = workload
        return None

    def pods_not_in(self, names: set[str]) -> list[Obj]:
        """The pods it holds, not ended, whose names a fresh list no longer has."""
        out = []
        for entry in self.seen.values():
            pod = entry.pod
            if pod is None or (entry.last is not None and entry.last.phase == "ended"):
                continue
            if str((pod.get("metadata") or {}).get("name")) not in names:
                out.append(pod)
        return out

    def status(self, key: Key) -> Status | None:
        entry = self.seen.get(key)
        return entry.last if entry else None

    def forget(self, key: Key) -> None:
        entry = self.seen.pop(key, None)
        self.ran.discard(key)
        if entry is not None and entry.job is not None:
            meta = entry.job.get("metadata") or {}
            self.by_job_name.pop(str(meta.get("name")), None)
            self.by_job_uid.pop(str(meta.get("uid")), None)


def _lost(pod: Obj) -> Obj:
    """A pod deleted while it ran (its node was lost and the pod garbage-collected, or someone
    deleted it): it ended without a word from its container."""
    status = dict(pod.get("status") or {})
    status.setdefault("reason", "Deleted")
    status["message"] = (
        status.get("message") or "the pod was deleted before it ended (node lost or deleted by hand)"
    )
    status["phase"] = "Failed"
    return {**pod, "status": status}
