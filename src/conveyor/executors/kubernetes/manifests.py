"""What Conveyor asks of a cluster, as plain manifests (dicts in the API's own JSON shape).

Pure functions: a ``Spec`` (one attempt) becomes a Secret (its execution-API token) and a
``batch/v1`` Job; a team becomes a Namespace, a ResourceQuota and, with Kueue, a LocalQueue.
Nothing here talks to a cluster, so ``conveyor kubernetes manifests`` prints exactly what the
executor would create, for review or for a GitOps repository, and the tests check every one
against the official schemas offline.

Why the Job looks the way it does:

- ``backoffLimit: 0`` and ``restartPolicy: Never``: Conveyor retries (a new attempt is a new Job,
  with its own token); Kubernetes retrying the same attempt would run it twice under one token.
- requests = limits, from the task's resources: the pod gets the Guaranteed QoS class, is the
  last evicted under node pressure, and a task that allocates past its memory is OOM-killed at
  its own limit (reported "out of memory"), not when the node runs short.
- ``activeDeadlineSeconds``: the task's timeout plus ``DEADLINE_SLACK``, a backstop: the cluster
  ends a runaway attempt even when no Conveyor process is watching. Conveyor's own timer counts
  from when the pod runs, the Job's from when it was created (or Kueue admitted it), so without
  the slack a slow image pull would end the Job before Conveyor could say "timed out".
- ``ttlSecondsAfterFinished``: ended Jobs (and their pods, and the Secret they own) are removed by
  the cluster, never by a Conveyor process that stops.
- the token in a Secret, read by ``valueFrom.secretKeyRef``: it is never in the Job's spec (which
  anyone with ``get jobs`` reads) nor in Conveyor's logs.
- Kueue: the ``kueue.x-k8s.io/queue-name`` label names the team's LocalQueue and the Job is
  created suspended; Kueue unsuspends it when the team's ClusterQueue admits it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from conveyor.executors.batch import Key, Spec
from conveyor.executors.kubernetes.settings import NAME_MAX, KubeSettings
from conveyor.quotas.model import TeamQuota

Manifest = dict[str, Any]

#: Kueue's label naming a Job's LocalQueue (pkg/controller/constants: QueueLabel).
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
#: The annotation holding the attempt's exact key (labels are trimmed to label syntax).
KEY_ANNOTATION = "conveyor.io/key"
TEAM_LABEL = "conveyor.io/team"
NETWORK_LABEL = "conveyor.io/network"
#: The Secret's key holding the token, and the variable the runner reads it from.
TOKEN_KEY = "token"
TOKEN_ENV = "CONVEYOR_ATTEMPT_TOKEN"
CONTAINER = "runner"
#: Seconds the cluster's deadline for a Job exceeds the task's timeout (see the module's doc).
DEADLINE_SLACK = 300
GPU = "nvidia.com/gpu"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]")


def label_value(text: str) -> str:
    """``text`` as a label value: [A-Za-z0-9_.-], at most 63, alphanumeric at both ends."""
    return _LABEL_VALUE.sub("-", text)[:NAME_MAX].strip("-_.")


def key_text(key: Key) -> str:
    run_id, instance, attempt = key
    return f"{run_id}/{instance}/{attempt}"


def labels_of(spec: Spec) -> dict[str, str]:
    labels = {name: label_value(value) for name, value in spec.labels.items()}
    if spec.team:
        labels[TEAM_LABEL] = label_value(spec.team)
    labels[NETWORK_LABEL] = "true" if spec.network else "false"
    return labels


def quantities(spec: Spec) -> dict[str, str]:
    """The container's requests (= its limits): cpu, memory in Mi, GPUs, extended resources.

    A custom resource whose name is an extended resource (``example.com/fpga``) passes through;
    other custom names (``licences``) are Conveyor's own and the cluster never hears of them."""
    r = spec.resources
    out = {"cpu": str(r.cpu)}
    if r.memory:
        out["memory"] = f"{math.ceil(r.memory / 2**20)}Mi"
    if r.gpu:
        out[GPU] = str(r.gpu)
    for name, amount in sorted(r.custom.items()):
        if "/" in name and amount:
            out[name] = str(amount)
    return out


def secret(spec: Spec, settings: KubeSettings) -> Manifest:
    """The attempt's token. It gets the Job as its owner once the Job exists
    (``owner_reference``), so the cluster removes it with the Job."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": spec.name,
            "namespace": settings.namespace_of(spec.team),
            "labels": labels_of(spec),
            "annotations": {KEY_ANNOTATION: key_text(spec.key)},
        },
        "type": "Opaque",
        "stringData": {TOKEN_KEY: spec.token},
    }


def owner_reference(job_name: str, job_uid: str) -> dict[str, Any]:
    """Makes the Job the Secret's owner: deleting the Job (its TTL) deletes the Secret."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job_name,
        "uid": job_uid,
        "blockOwnerDeletion": False,
    }


def job(spec: Spec, settings: KubeSettings) -> Manifest:
    """The ``batch/v1`` Job that runs one attempt (the module's docstring says why each field)."""
    labels = labels_of(spec)
    env = dict(spec.env)
    if settings.api:
        env["CONVEYOR_EXECUTION_API"] = settings.api
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(spec.command),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())]
        + [
            {
                "name": TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": spec.name, "key": TOKEN_KEY}},
            }
        ],
        "resources": {"requests": quantities(spec), "limits": quantities(spec)},
    }
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    else:  # the runner reports to Conveyor's API with its own token: it needs no cluster access
        pod["automountServiceAccountToken"] = False
    job_labels = dict(labels)
    if settings.kueue:
        job_labels[QUEUE_LABEL] = settings.queue_of(spec.team)
    body: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": settings.ttl,
        "template": {
            "metadata": {"labels": labels, "annotations": {KEY_ANNOTATION: key_text(spec.key)}},
            "spec": pod,
        },
    }
    if spec.timeout:
        body["activeDeadlineSeconds"] = math.ceil(spec.timeout) + DEADLINE_SLACK
    if settings.kueue:
        body["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": spec.name,
            "namespace": settings.namespace_of(spec.team),
            "labels": job_labels,
            "annotations": {KEY_ANNOTATION: key_text(spec.key)},
        },
        "spec": body,
    }


def attempt(spec: Spec, settings: KubeSettings) -> list[Manifest]:
    """Everything one attempt creates, in the order it is created."""
    return [secret(spec, settings), job(spec, settings)]


# -- a team ------------------------------------------------------------------------------------
def namespace(team: str, settings: KubeSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace_of(team), "labels": {TEAM_LABEL: label_value(team)}},
    }


def resource_quota(quota: TeamQuota, settings: KubeSettings) -> Manifest | None:
    """The team's quota as a ResourceQuota on its namespace, or None when the quota limits no
    resource the cluster knows. The cluster then refuses a pod past the team's limits even when
    it was created by something other than Conveyor; Conveyor's own admission keeps attempts
    from ever reaching that refusal (they wait, saying why, instead)."""
    hard: dict[str, str] = {}
    for name, amount in sorted(quota.limits.items()):
        if name == "cpu":
            hard["requests.cpu"] = hard["limits.cpu"] = str(amount)
        elif name == "memory":
            hard["requests.memory"] = hard["limits.memory"] = f"{amount // 2**20}Mi"
        elif name == "gpu":
            hard[f"requests.{GPU}"] = str(amount)
        elif "/" in name:  # an extended resource: requests only, as the API demands
            hard[f"requests.{name}"] = str(amount)
    if not hard:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": "conveyor-quota",
            "namespace": settings.namespace_of(quota.team),
            "labels": {TEAM_LABEL: label_value(quota.team)},
        },
        "spec": {"hard": hard},
    }


def local_queue(team: str, settings: KubeSettings) -> Manifest:
    """The team's Kueue LocalQueue, pointing at the ClusterQueue that holds the cluster's quota."""
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "LocalQueue",
        "metadata": {
            "name": settings.queue_of(team),
            "namespace": settings.namespace_of(team),
            "labels": {TEAM_LABEL: label_value(team)},
        },
        "spec": {"clusterQueue": settings.cluster_queue},
    }


def team(team: str, settings: KubeSettings, quota: TeamQuota | None = None) -> list[Manifest]:
    """A team's namespace, its quota (when it has limits) and, with Kueue, its LocalQueue."""
    out = [namespace(team, settings)]
    rq = resource_quota(quota, settings) if quota is not None else None
    if rq is not None:
        out.append(rq)
    if settings.kueue:
        out.append(local_queue(team, settings))
    return out


def key_of(obj: Mapping[str, Any]) -> Key | None:
    """The attempt a Job, pod or Secret belongs to, from its annotation (or its labels)."""
    meta = obj.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(KEY_ANNOTATION)
    if text and text.count("/") >= 2:
        run_id, instance, attempt_no = text.rsplit("/", 2)
        if attempt_no.isdigit():
            return run_id, instance, int(attempt_no)
    labels = meta.get("labels") or {}
    run_id, instance, attempt_no = (labels.get(f"conveyor.io/{k}") for k in ("run", "instance", "attempt"))
    if run_id and instance and attempt_no and attempt_no.isdigit():
        return run_id, instance, int(attempt_no)
    return None
