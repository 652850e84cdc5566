"""The manifests a run would send to the cluster, without a cluster: for review or GitOps.

``preview`` records the pipeline's graph (nothing runs) and builds each task instance's first
attempt as the batch executor would (``batch.spec_of``), then
its Secret and Job, after the team's Namespace, ResourceQuota and LocalQueue. Two things are
placeholders, because only a real run has them: the run id (``RUN_ID``) and each attempt's
token (``TOKEN``: the real one is minted per attempt and only ever sent in its Secret).
``check`` validates manifests against the official Kubernetes schema offline
(``kubernetes-validate``, strict), so a wrong field is one line naming it, before any cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.errors import ExecutorError
from conveyor.executors import need
from conveyor.executors.batch import spec_of
from conveyor.executors.kubernetes import manifests
from conveyor.executors.kubernetes.manifests import Manifest
from conveyor.executors.kubernetes.settings import KubeSettings
from conveyor.quotas.model import TeamQuota
from conveyor.runner import Job

RUN_ID = "preview"
TOKEN = "minted-per-attempt-at-submit"
#: The Kubernetes version whose schema ``check`` uses (kubernetes-validate ships 1.25 and later).
KUBERNETES_VERSION = "1.33"
#: The API's address in a preview when the settings name none.
API_PLACEHOLDER = "http://conveyor-execution-api:8080"


def preview(
    target: str,
    values: Mapping[str, Any],
    settings: KubeSettings,
    *,
    team: str = "",
    quota: TeamQuota | None = None,
    pool: str = "cv-preview",
) -> list[Manifest]:
    """The team's manifests, then a Secret and a Job per task instance of the run's graph."""
    from conveyor.loader import load_pipeline

    pipe = load_pipeline(target)
    graph = pipe.build(values, from_text=True)
    params = {k: str(v) for k, v in values.items()}
    out = manifests.team(team, settings, quota) if team else []
    api = settings.api or API_PLACEHOLDER
    for node in graph:
        job = Job(RUN_ID, node.id, 1, "", "", {}, target, params)
        t = node.task
        spec = spec_of(
            job, api=api, token=TOKEN, resources=t.resources, timeout=t.timeout, team=team, pool=pool,
            network=t.network,
        )  # fmt: skip
        out.extend(manifests.attempt(spec, settings))
    return out


def check(found: Sequence[Manifest], version: str = KUBERNETES_VERSION) -> None:
    """Validate every built-in kind against the official schema (strict: no unknown field);
    a one-line ``ExecutorError`` names the manifest, the field and the schema's complaint.
    Kueue's kinds are custom resources the official schema does not hold: they are skipped."""
    kv = need("kubernetes_validate", "kubernetes")
    for m in found:
        if str(m.get("apiVersion", "")).startswith("kueue.x-k8s.io/"):
            continue
        try:
            kv.validate(m, version, strict=True)
        except kv.ValidationError as exc:
            field = ".".join(str(p) for p in exc.absolute_path) or "(top)"
            meta = m.get("metadata") or {}
            raise ExecutorError(
                f"the {m.get('kind')} {meta.get('namespace', '')}/{meta.get('name', '')} is invalid for "
                f"Kubernetes {version}: {field}: {exc.message}"
            ) from None
