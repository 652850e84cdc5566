"""``--executor kubernetes``: every attempt a Kubernetes Job (docs/kubernetes.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from conveyor.executors.batch import BatchExecutor, pool_name
from conveyor.executors.kubernetes.backend import KubernetesBackend
from conveyor.executors.kubernetes.settings import parse
from conveyor.recorder import Recorder


class KubernetesExecutor(BatchExecutor):
    """The batch executor on a Kubernetes cluster: the Jobs of one store share one pool label,
    so any scheduler of that store finds and adopts them after a takeover."""

    name: ClassVar[str] = "kubernetes"

    def __init__(
        self,
        workers: int,
        log_dir: str,
        *,
        recorder: Recorder | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """``workers`` is the local cpu; the cluster's nodes run the attempts, so it is unused."""
        s = parse(settings)
        pool = pool_name(recorder, log_dir)
        super().__init__(KubernetesBackend(s, pool), pool=pool, jobs=s.jobs)
