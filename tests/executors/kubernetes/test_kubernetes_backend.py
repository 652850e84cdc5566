"""The backend with the REAL ``kubernetes`` client against a loopback server that replays
recorded API objects (fixtures/README.md): submit, adopt by label, watch (and relist after
410 Gone), stop, and never a delete because Conveyor stops. A live run on a real cluster is in
``test_kubernetes_live.py``."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from conveyor.errors import ExecutorError
from conveyor.executors.batch import BatchExecutor
from conveyor.executors.kubernetes.backend import KubernetesBackend, connect
from conveyor.executors.kubernetes.manifests import KEY_ANNOTATION
from conveyor.executors.kubernetes.settings import KubeSettings, parse
from conveyor.executors.port import Launch, Lost, Placed, Ticket
from conveyor.resources import Resources
from conveyor.runner import Job

FIXTURES = Path(__file__).parent / "fixtures"
POOL = "cv-pool1"
SECRET_TOKEN = "kubeconfig-bearer-token-never-printed"


def recorded(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def job_of(attempt: int) -> Job:
    return Job("run1", f"inst{attempt}", attempt, "", "", {}, "p.py:p", {})


def ours(obj: dict[str, Any], kind: str, attempt: int, pool: str = POOL, rv: int = 1) -> dict[str, Any]:
    """A recorded object made one of an attempt's: its labels, key annotation and name."""
    obj = copy.deepcopy(obj)
    obj["kind"] = kind
    meta = obj.setdefault("metadata", {})
    name = f"cv-run1-inst{attempt}-{attempt}"
    meta.update(
        name=name if kind == "Job" else f"{name}-x7k2p", namespace="conveyor", resourceVersion=str(rv)
    )
    meta["labels"] = {
        "conveyor.io/pool": pool,
        "conveyor.io/run": "run1",
        "conveyor.io/instance": f"inst{attempt}",
        "conveyor.io/attempt": str(attempt),
        **({"batch.kubernetes.io/job-name": name} if kind == "Pod" else {}),
    }
    meta["annotations"] = {KEY_ANNOTATION: f"run1/inst{attempt}/{attempt}"}
    return obj


@dataclass
class Cluster:
    """What the replay server holds and serves, and every request it was sent."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    watches: dict[str, list[list[dict[str, Any]]]] = field(default_factory=dict)  # path -> streams
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    version: str = "100"
    refuse: str = ""  # the message a Job's creation is refused with (403), if any


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}  # fmt: skip


def _selected(items: list[dict[str, Any]], selector: str | None) -> list[dict[str, Any]]:
    wanted = dict(p.split("=", 1) for p in selector.split(",")) if selector else {}
    return [
        i for i in items if all((i["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
    ]


def _handler(cluster: Cluster) -> type[BaseHTTPRequestHandler]:
    class Replay(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any] | None:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n)) if n else None

        def do_GET(self) -> None:
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            cluster.requests.append(("GET", self.path, None))
            if url.path == "/version":
                return self._send(200, recorded("version"))
            kinds = {
                "/apis/batch/v1/jobs": ("JobList", cluster.jobs),
                "/api/v1/pods": ("PodList", cluster.pods),
                "/api/v1/namespaces/conveyor/pods": ("PodList", cluster.pods),
                "/apis/kueue.x-k8s.io/v1beta2/workloads": ("WorkloadList", cluster.workloads),
            }
            if url.path not in kinds:
                return self._send(404, _status(404, "NotFound", f"the server could not find {url.path}"))
            kind, items = kinds[url.path]
            if q.get("watch") == "true":
                streams = cluster.watches.get(url.path) or []
                events = streams.pop(0) if streams else []
                if not events:
                    time.sleep(0.2)  # an idle watch: nothing changed
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                for event in events:
                    self.wfile.write(json.dumps(event).encode() + b"\n")
                return None
            body = {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": cluster.version},
                    "items": _selected(items, q.get("labelSelector"))}  # fmt: skip
            return self._send(200, body)

        def do_POST(self) -> None:
            body = self._body() or {}
            cluster.requests.append(("POST", self.path, body))
            meta = body.setdefault("metadata", {})
            if self.path.endswith("/jobs") and cluster.refuse:
                return self._send(403, _status(403, "Forbidden", cluster.refuse))
            if self.path.endswith("/jobs") and any(
                j["metadata"]["name"] == meta["name"] for j in cluster.jobs
            ):
                return self._send(
                    409, _status(409, "AlreadyExists", f'jobs.batch "{meta["name"]}" already exists')
                )
            meta.update(uid=f"uid-{meta['name']}", resourceVersion="101")
            if self.path.endswith("/jobs"):
                cluster.jobs.append(body)
            return self._send(201, body)

        def do_PATCH(self) -> None:
            cluster.requests.append(("PATCH", self.path, self._body()))
            return self._send(200, {"kind": "Status", "metadata": {}})

        def do_DELETE(self) -> None:
            cluster.requests.append(("DELETE", self.path, self._body()))
            return self._send(
                200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
            )

    return Replay


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Cluster, KubeSettings]]:
    state = Cluster()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_kubeconfig(f"http://127.0.0.1:{server.server_port}"))
    yield state, parse({"kubeconfig": str(kubeconfig), "namespace": "conveyor"})
    server.shutdown()
    server.server_close()


def _kubeconfig(server: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "replay", "cluster": {"server": server}}],
            "users": [{"name": "ann", "user": {"token": SECRET_TOKEN}}],
            "contexts": [{"name": "replay", "context": {"cluster": "replay", "user": "ann"}}],
            "current-context": "replay",
        }
    )


def _reports(executor: BatchExecutor, want: int, timeout: float = 10.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got.extend(executor.poll(0.5))
    return got


def test_a_new_owner_adopts_the_pools_jobs_and_hears_how_they_end(
    cluster: tuple[Cluster, KubeSettings],
) -> None:
    state, settings = cluster
    state.jobs = [ours(recorded("job-running"), "Job", 1), ours(recorded("job-running"), "Job", 2),
                  ours(recorded("job-running"), "Job", 3, pool="cv-other")]  # fmt: skip
    state.pods = [ours(recorded("pod-running"), "Pod", 1), ours(recorded("pod-container-creating"), "Pod", 2)]
    evicted = ours(recorded("pod-evicted"), "Pod", 1, rv=101)
    state.watches["/api/v1/pods"] = [[{"type": "MODIFIED", "object": evicted}]]
    executor = BatchExecutor(KubernetesBackend(settings, POOL), pool=POOL)
    try:
        executor.adopt([job_of(1), job_of(2), job_of(4)])  # 4 is not in the cluster: not held
        assert sorted(j.attempt for j in executor.running()) == [1, 2]  # not the other pool's 3
        reports = _reports(executor, 3)
        placed = {r.job.attempt: r.where for r in reports if isinstance(r, Placed)}
        assert placed[1] == "running on node minikube"
        assert placed[2].startswith("starting on node minikube (ContainerCreating")
        (lost,) = [r for r in reports if isinstance(r, Lost)]
        assert lost.job.attempt == 1 and lost.blameless
        assert lost.reason.startswith("evicted: The node was low on resource: memory.")
        assert [j.attempt for j in executor.running()] == [2]
    finally:
        executor.detach()
    assert not [r for r in state.requests if r[0] == "DELETE"], "detaching deletes no Job"


def test_after_410_gone_it_lists_again_and_misses_nothing(cluster: tuple[Cluster, KubeSettings]) -> None:
    state, settings = cluster
    state.jobs = [ours(recorded("job-running"), "Job", 1)]
    state.pods = [ours(recorded("pod-running"), "Pod", 1)]
    state.watches["/api/v1/pods"] = [[recorded("watch-expired")]]  # the first watch: too old
    backend = KubernetesBackend(settings, POOL)
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 10
        while "running on node minikube" not in seen and time.monotonic() < deadline:
            seen.extend(s.where for s in backend.watch(0.5))
        assert seen[-1] == "running on node minikube"  # (the Job's list may come before the pods')
        state.pods = [ours(recorded("pod-failed"), "Pod", 1, rv=150)]  # changed while we were away
        state.version = "150"
        deadline = time.monotonic() + 10
        ended = []
        while not ended and time.monotonic() < deadline:
            ended = [s for s in backend.watch(0.5) if s.phase == "ended"]
        assert ended and ended[0].exit_code == 1
    finally:
        backend.close()
    pod_calls = [p for m, p, _ in state.requests if m == "GET" and p.startswith("/api/v1/pods")]
    lists = [p for p in pod_calls if "watch=true" not in p]
    watches = [p for p in pod_calls if "watch=true" in p]
    assert len(lists) >= 2, "listed again after 410"
    assert "resourceVersion=100" in watches[0]


def test_submit_creates_the_secret_then_the_job_and_gives_the_secret_its_owner(
    cluster: tuple[Cluster, KubeSettings],
) -> None:
    state, settings = cluster
    executor = BatchExecutor(KubernetesBackend(settings, POOL), pool=POOL)
    try:
        launch = Launch(resources=Resources(cpu=2, memory=2**30), ticket=Ticket("http://api:8080", "tok-123"))
        executor.submit(job_of(1), launch, time.time())
        assert [j.attempt for j in executor.running()] == [1]
    finally:
        executor.close()
    writes = [(m, p, b) for m, p, b in state.requests if m != "GET"]
    assert [(m, p.split("?")[0]) for m, p, _ in writes] == [
        ("POST", "/api/v1/namespaces/conveyor/secrets"),
        ("POST", "/apis/batch/v1/namespaces/conveyor/jobs"),
        ("PATCH", "/api/v1/namespaces/conveyor/secrets/cv-run1-inst1-1"),
    ]
    secret, job, owner = (b for _, _, b in writes)
    assert secret is not None and secret["stringData"]["token"] == "tok-123"
    assert "tok-123" not in json.dumps(job)
    assert owner == {"metadata": {"ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "cv-run1-inst1-1", "uid": "uid-cv-run1-inst1-1",
         "blockOwnerDeletion": False}]}}  # fmt: skip


def test_stop_ends_the_job_then_deletes_its_pods_with_the_grace(
    cluster: tuple[Cluster, KubeSettings],
) -> None:
    state, settings = cluster
    state.jobs = [ours(recorded("job-running"), "Job", 1)]
    state.pods = [ours(recorded("pod-running"), "Pod", 1)]
    backend = KubernetesBackend(settings, POOL)
    try:
        backend.find(POOL)
        backend.stop(("run1", "inst1", 1), grace=7.0)
    finally:
        backend.close()
    writes = [(m, p, b) for m, p, b in state.requests if m != "GET"]
    assert writes[0] == ("PATCH", "/apis/batch/v1/namespaces/conveyor/jobs/cv-run1-inst1-1",
                         {"spec": {"activeDeadlineSeconds": 1}})  # fmt: skip
    assert writes[1][0] == "DELETE" and writes[1][1].startswith(
        "/api/v1/namespaces/conveyor/pods/cv-run1-inst1-1-"
    )
    assert "gracePeriodSeconds=7" in writes[1][1]
    assert not [w for w in writes if "/jobs/" in w[1] and w[0] == "DELETE"], "the Job and its log stay"


def test_an_unreachable_cluster_is_one_line_naming_it_without_credentials(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_kubeconfig("http://127.0.0.1:9"))  # nothing listens on the discard port
    with pytest.raises(ExecutorError) as err:
        connect(parse({"kubeconfig": str(kubeconfig)}))
    message = str(err.value)
    assert "\n" not in message and "http://127.0.0.1:9" in message and SECRET_TOKEN not in message


def test_a_bad_kubeconfig_is_one_line_naming_the_file(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        _kubeconfig("http://127.0.0.1:9").replace("current-context: replay", "current-context: x")
    )
    with pytest.raises(ExecutorError) as err:
        connect(parse({"kubeconfig": str(kubeconfig)}))
    assert "\n" not in str(err.value) and str(kubeconfig) in str(err.value)


def test_a_job_that_never_ran_is_deleted_when_stopped_or_when_its_end_is_recorded(
    cluster: tuple[Cluster, KubeSettings],
) -> None:
    state, settings = cluster
    state.jobs = [ours(recorded("job-running"), "Job", n) for n in (1, 2)]
    state.pods = [
        ours(recorded("pod-unschedulable"), "Pod", 1),
        ours(recorded("pod-imagepullbackoff"), "Pod", 2),
    ]
    backend = KubernetesBackend(settings, POOL)
    try:
        found = {s.key[2]: s for s in backend.find(POOL)}
        assert found[1].phase == "queued" and found[2].reason is not None
        backend.stop(("run1", "inst1", 1), grace=5.0)  # unschedulable: nothing of it ran
        backend.forget(("run1", "inst2", 2))  # its pod can never start: it would wait on forever
    finally:
        backend.close()
    deletes = [p.split("?")[0] for m, p, _ in state.requests if m == "DELETE"]
    assert deletes == [f"/apis/batch/v1/namespaces/conveyor/jobs/cv-run1-inst{n}-{n}" for n in (1, 2)]


def test_a_pod_gone_while_the_watch_was_away_is_lost_blameless(cluster: tuple[Cluster, KubeSettings]) -> None:
    """Node loss seen across a relist: the pod was deleted while the watch's history expired."""
    state, settings = cluster
    state.jobs = [ours(recorded("job-running"), "Job", 1)]
    state.pods = [ours(recorded("pod-running"), "Pod", 1)]
    state.watches["/api/v1/pods"] = [[recorded("watch-expired")]]
    backend = KubernetesBackend(settings, POOL)
    try:
        seen: list[Any] = []
        deadline = time.monotonic() + 10
        while not any(s.phase == "ended" for s in seen) and time.monotonic() < deadline:
            seen.extend(backend.watch(0.5))
            if any(s.phase == "running" for s in seen):
                state.pods = []  # the first relist saw it running; the next one does not
    finally:
        backend.close()
    (ended,) = [s for s in seen if s.phase == "ended"]
    assert ended.blameless and ended.reason is not None and "deleted before it ended" in ended.reason


def test_kueues_reason_reaches_the_attempt_though_its_workload_has_none_of_our_labels(
    cluster: tuple[Cluster, KubeSettings],
) -> None:
    state, settings = cluster
    job = ours(recorded("job-suspended"), "Job", 1)
    job["metadata"]["uid"] = "0b3c5d"
    job["spec"]["suspend"] = True
    workload = recorded("workload-pending")  # as Kueue labels it: its Job's uid, nothing of ours
    labels = {"kueue.x-k8s.io/job-uid": "0b3c5d"}
    owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": "cv-run1-inst1-1", "uid": "0b3c5d"}]
    workload["metadata"] = {"name": "job-cv-run1-inst1-1-5f2a1", "namespace": "conveyor", "labels": labels,
                            "ownerReferences": owner}  # fmt: skip
    workload["spec"] = {"queueName": "analytics-queue"}
    state.jobs, state.workloads = [job], [workload]
    backend = KubernetesBackend(parse({"kubeconfig": settings.kubeconfig, "kueue": True}), POOL)
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 10
        while not any("couldn't assign flavors" in w for w in seen) and time.monotonic() < deadline:
            seen.extend(s.where for s in backend.watch(0.5))
    finally:
        backend.close()
    assert seen[-1] == (
        "queued in Kueue (analytics-queue): couldn't assign flavors to pod set main: "
        "insufficient quota for cpu in flavor default-flavor in ClusterQueue"
    )
    workload_lists = [p for m, p, _ in state.requests if p.startswith("/apis/kueue.x-k8s.io/")]
    assert workload_lists and "labelSelector" not in workload_lists[0]


def test_a_refused_job_is_lost_with_the_clusters_message_and_leaves_no_secret(
    cluster: tuple[Cluster, KubeSettings],
) -> None:
    state, settings = cluster
    state.refuse = (
        'jobs.batch "cv-run1-inst1-1" is forbidden: exceeded quota: conveyor-quota, requested: '
        "limits.cpu=2, used: limits.cpu=8, limited: limits.cpu=8"
    )
    executor = BatchExecutor(KubernetesBackend(settings, POOL), pool=POOL)
    try:
        launch = Launch(resources=Resources(cpu=2), ticket=Ticket("http://api:8080", "tok-123"))
        executor.submit(job_of(1), launch, time.time())
        (lost,) = _reports(executor, 1)
    finally:
        executor.close()
    assert isinstance(lost, Lost) and "exceeded quota: conveyor-quota" in lost.reason
    assert "\n" not in lost.reason
    assert [(m, p.split("?")[0]) for m, p, _ in state.requests if m == "DELETE"] == [
        ("DELETE", "/api/v1/namespaces/conveyor/secrets/cv-run1-inst1-1")
    ]


def test_the_executor_is_found_by_name_and_names_its_image(
    cluster: tuple[Cluster, KubeSettings], tmp_path: Path
) -> None:
    from conveyor.executors import load

    _, settings = cluster
    factory = load("kubernetes")
    executor = factory(
        2, str(tmp_path / "logs"), settings={"kubeconfig": settings.kubeconfig, "image": "reg/x:1"}
    )
    try:
        assert executor.name == "kubernetes" and executor.image == "reg/x:1"
        assert executor.pool.startswith("cv-") and executor.check(Resources(cpu=64)) is None
    finally:
        executor.close()
