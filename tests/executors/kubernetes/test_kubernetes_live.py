"""On a real cluster, when ``CONVEYOR_TEST_KUBECONFIG`` names one (no Kubernetes API server can
run on the machines this project is built on, CI's included, so these skip there, saying so).

- the backend's round trip in a namespace of its own: a Job that reads its token from the
  Secret and ends 0 on a named node, a memory hog reported out of memory, an image that cannot be
  pulled reported blameless, the pool's Jobs found by label; the namespace is deleted after;
- the demo, ``conveyor run examples/sales/pipeline.py:daily_sales --executor kubernetes``, when
  ``CONVEYOR_TEST_KUBERNETES_IMAGE`` (an image with this Conveyor and the demo's code) and
  ``CONVEYOR_TEST_EXECUTION_API`` (a ``conveyor server`` the pods reach, sharing the store and
  ``[executor] storage`` with this machine) are set too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.executors.batch import Spec, Status, job_name, labels
from conveyor.executors.kubernetes import manifests
from conveyor.executors.kubernetes.backend import KubernetesBackend
from conveyor.executors.kubernetes.settings import KubeSettings, parse
from conveyor.resources import Resources
from conveyor.runner import Job

KUBECONFIG = os.environ.get("CONVEYOR_TEST_KUBECONFIG")
HOW = (
    "no Kubernetes cluster: set CONVEYOR_TEST_KUBECONFIG to a kubeconfig whose current context may "
    "create namespaces, Jobs and Secrets (kind, k3d or minikube make one); none can run on this machine"
)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.skipif(not KUBECONFIG, reason=HOW)]
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[KubernetesBackend, KubeSettings]]:
    from kubernetes import client

    ns = f"conveyor-live-{uuid.uuid4().hex[:8]}"
    image = os.environ.get("CONVEYOR_TEST_KUBERNETES_BASE", "python:3.11-slim")
    settings = parse({"kubeconfig": KUBECONFIG, "namespace": ns, "image": image, "ttl": 600})
    backend = KubernetesBackend(settings, pool=f"cv-{ns}")
    core = client.CoreV1Api(backend.client)
    core.create_namespace(manifests.namespace("", settings))
    try:
        yield backend, settings
    finally:
        backend.close()
        core.delete_namespace(ns)  # the test's own namespace, made above


def _spec(pool: str, n: int, command: tuple[str, ...], resources: Resources) -> Spec:
    job = Job("live", f"inst{n}", 1, "", "", {}, "p.py:p", {})
    return Spec(("live", f"inst{n}", 1), job_name(job), command, {}, "tok", resources, 300.0, "",
                labels(pool, job), False, job)  # fmt: skip


def _until_ended(backend: KubernetesBackend, keys: set[Any], timeout: float = 600) -> dict[Any, list[Status]]:
    import time

    seen: dict[Any, list[Status]] = {k: [] for k in keys}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(s and s[-1].phase == "ended" for s in seen.values()):
        for status in backend.watch(2.0):
            if status.key in seen:
                seen[status.key].append(status)
    return seen


def test_jobs_run_end_and_say_why_on_a_real_cluster(live: tuple[KubernetesBackend, KubeSettings]) -> None:
    backend, _ = live
    pool = backend.pool
    token = "import os; assert os.environ['CONVEYOR_ATTEMPT_TOKEN'] == 'tok'"
    ok = _spec(pool, 1, ("python3", "-c", token), Resources())
    hog = _spec(pool, 2, ("python3", "-c", "b = bytearray(512 * 2**20)"), Resources(memory=64 * 2**20))
    for spec in (ok, hog):
        backend.start(spec)
    seen = _until_ended(backend, {ok.key, hog.key})
    assert seen[ok.key][-1].exit_code == 0, seen[ok.key]
    assert any("node" in s.where for s in seen[ok.key]), "where it ran is named"
    assert seen[hog.key][-1].reason is not None and seen[hog.key][-1].reason.startswith("out of memory")
    assert {s.key for s in backend.find(pool)} >= {ok.key, hog.key}


@pytest.mark.skipif(
    not (os.environ.get("CONVEYOR_TEST_KUBERNETES_IMAGE") and os.environ.get("CONVEYOR_TEST_EXECUTION_API")),
    reason="the demo on a cluster needs CONVEYOR_TEST_KUBERNETES_IMAGE (this Conveyor and the demo's code) "
    "and CONVEYOR_TEST_EXECUTION_API (a conveyor server the pods reach, on the same store and storage)",
)
def test_the_demo_runs_on_a_real_cluster(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CONVEYOR_KUBERNETES_KUBECONFIG": str(KUBECONFIG),
        "CONVEYOR_KUBERNETES_IMAGE": os.environ["CONVEYOR_TEST_KUBERNETES_IMAGE"],
        "CONVEYOR_EXECUTION_API": os.environ["CONVEYOR_TEST_EXECUTION_API"],
    }
    demo = str(ROOT / "examples/sales/pipeline.py") + ":daily_sales"
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", demo, "--executor", "kubernetes"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=850,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
