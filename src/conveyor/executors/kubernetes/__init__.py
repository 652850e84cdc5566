"""Kubernetes: one Job per attempt, in the team's namespace, optionally queued by Kueue.

- ``settings``: ``[executor.kubernetes]``, checked once;
- ``manifests``: pure functions from an attempt or a team to the manifests the cluster gets;
- ``status``: pure mapping from the API's Job, pod and Workload objects to where an attempt is;
- ``backend``: the official client: create, watch, find (adopt), stop;
- ``executor``: ``KubernetesExecutor``, the batch executor on that backend.

Only ``backend`` and ``executor`` import the ``kubernetes`` client (the ``kubernetes`` extra), so
manifests can be printed and checked without it.
"""

from __future__ import annotations

from conveyor.executors.kubernetes.settings import KubeSettings, parse

__all__ = ["KubeSettings", "parse"]
