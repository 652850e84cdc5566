"""The Kubernetes backend of the batch executor: one Job per attempt, through the official client.

It creates a Secret (the token) and a Job per attempt (``manifests``), watches Jobs and pods (and
Kueue Workloads, with Kueue) of its pool with ``kubernetes.watch.Watch`` streams in threads,
keeping each stream's ``resourceVersion`` and listing again when the server says it is too old
(410 Gone), and turns what it sees into ``Status`` changes (``status.Tracker``).

What it never does: delete a Job because this process stops. ``close`` ends the watches only;
Jobs run on and their runners record their ends through the execution API, and the next owner
finds them by the pool's label (``find``) and adopts them. Ended Jobs are removed by the
cluster (``ttlSecondsAfterFinished``), with their pods and Secret, so their logs stay readable
until then.

``stop(key, grace)``: the Job's ``activeDeadlineSeconds`` is set to 1, so the Job controller
makes no new pod and ends the Job (DeadlineExceeded), then its pods are deleted with
``gracePeriodSeconds=grace``: the kubelet sends SIGTERM, and SIGKILL after ``grace``. The Job
itself stays (with its log) until its TTL. A Job never seen running (queued in Kueue,
unschedulable, still starting) is deleted outright: nothing of it ran.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from conveyor.errors import ExecutorError
from conveyor.executors import need
from conveyor.executors.batch import Key, Spec, Status
from conveyor.executors.kubernetes import manifests
from conveyor.executors.kubernetes.settings import KubeSettings
from conveyor.executors.kubernetes.status import Tracker
from conveyor.resources import Resources

log = logging.getLogger("conveyor.executors.kubernetes")

POOL_LABEL = "conveyor.io/pool"
KUEUE = ("kueue.x-k8s.io", "v1beta2", "workloads")
#: How long one watch request stays open before it is renewed (the server's own limit is longer).
WATCH_SECONDS = 60
#: Seconds to wait for the API server before calling it unreachable.
CONNECT_TIMEOUT = 10.0


def connect(settings: KubeSettings) -> Any:
    """An ``ApiClient`` for the configured cluster, checked to answer: the kubeconfig (its
    context) when one is named, else the pod's own service account inside a cluster, else the
    default kubeconfig. A bad kubeconfig or an unreachable server is one ``ExecutorError`` naming
    the server's URL, never a credential."""
    k = need("kubernetes", "kubernetes")
    cfg = k.client.Configuration()
    where = settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        if settings.kubeconfig or settings.context or not os.environ.get("KUBERNETES_SERVICE_HOST"):
            k.config.load_kube_config(
                config_file=settings.kubeconfig, context=settings.context, client_configuration=cfg
            )
        else:
            k.config.load_incluster_config(client_configuration=cfg)
            where = "the pod's service account"
    except (k.config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise ExecutorError(
            f"cannot use the kubeconfig {where}"
            + (f" (context {settings.context!r})" if settings.context else "")
            + f": {_first_line(exc)}; set [executor.kubernetes] kubeconfig and context"
        ) from None
    client = k.client.ApiClient(cfg)
    try:
        k.client.VersionApi(client).get_code(_request_timeout=CONNECT_TIMEOUT)
    except k.client.ApiException as exc:
        if exc.status in (401, 403):
            raise ExecutorError(
                f"the Kubernetes cluster at {cfg.host} refused the credentials of {where} "
                f"({exc.status} {exc.reason}); check [executor.kubernetes] kubeconfig and context"
            ) from None
    except Exception as exc:  # urllib3's connection errors, TLS, DNS: one line
        raise ExecutorError(
            f"cannot reach the Kubernetes cluster at {cfg.host} ({type(exc).__name__}); "
            f"check that it runs and that [executor.kubernetes] kubeconfig/context name it"
        ) from None
    return client


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


class KubernetesBackend:
    """The ``Backend`` that runs attempts as Kubernetes Jobs (the module's docstring)."""

    name = "kubernetes"

    def __init__(self, settings: KubeSettings, pool: str, client: Any | None = None) -> None:
        self.k = need("kubernetes", "kubernetes")
        self.settings = settings
        self.image: str | None = settings.image
        self.pool = pool
        self.client = client if client is not None else connect(settings)
        self.host = str(self.client.configuration.host)
        self.batch = self.k.client.BatchV1Api(self.client)
        self.core = self.k.client.CoreV1Api(self.client)
        self.custom = self.k.client.CustomObjectsApi(self.client)
        self.selector = f"{POOL_LABEL}={manifests.label_value(pool)}"
        self.tracker = Tracker()
        self.lock = threading.Lock()
        self.changes: queue.Queue[Status] = queue.Queue()
        self.names: dict[Key, tuple[str, str]] = {}  # key -> (namespace, job name)
        self.closed = threading.Event()
        self.watches: list[Any] = []
        self.threads: list[threading.Thread] = []

    # -- the port's calls ----------------------------------------------------------------------
    def check(self, resources: Resources) -> str | None:
        """Nodes come and go (autoscalers): a request no node fits now waits Unschedulable and
        says so, rather than being refused here."""
        return None

    def start(self, spec: Spec) -> None:
        self._watch()
        ns = self.settings.namespace_of(spec.team)
        secret, job = manifests.attempt(spec, self.settings)
        self._call(
            f"create Secret {ns}/{spec.name}", self.core.create_namespaced_secret, ns, secret, ok=(409,)
        )
        try:
            created = self._call(
                f"create Job {ns}/{spec.name}", self.batch.create_namespaced_job, ns, job, ok=(409,)
            )
        except ExecutorError:  # refused (invalid, over the namespace's quota): leave no Secret behind
            delete = self.core.delete_namespaced_secret
            with contextlib.suppress(ExecutorError):
                self._call(f"delete Secret {ns}/{spec.name}", delete, spec.name, ns, ok=(404,))
            raise
        if created is None:  # it exists already: a resubmission after a takeover; adopt it
            created = self._call(f"read Job {ns}/{spec.name}", self.batch.read_namespaced_job, spec.name, ns)
        uid = created["metadata"]["uid"]
        owner = {"metadata": {"ownerReferences": [manifests.owner_reference(spec.name, uid)]}}
        self._call(f"own Secret {ns}/{spec.name}", self.core.patch_namespaced_secret, spec.name, ns, owner)
        with self.lock:
            self.names[spec.key] = (ns, spec.name)
            created.setdefault("kind", "Job")
            change = self.tracker.feed(created)
        if change is not None:
            self.changes.put(change)

    def stop(self, key: Key, grace: float) -> None:
        ns, name = self._where(key)
        with self.lock:
            now = self.tracker.status(key)
            ran = key in self.tracker.ran
        if now is not None and now.phase == "ended":
            return
        if not ran:  # queued, unschedulable, still starting: nothing of it ran
            self._delete_job(ns, name)
            return
        patch = {"spec": {"activeDeadlineSeconds": 1}}
        self._call(f"stop Job {ns}/{name}", self.batch.patch_namespaced_job, name, ns, patch, ok=(404,))
        pods = self._call(
            f"list pods of Job {ns}/{name}",
            self.core.list_namespaced_pod,
            ns,
            label_selector=f"batch.kubernetes.io/job-name={name}",
        )
        for pod in (pods or {}).get("items") or []:
            self._call(
                f"delete pod {ns}/{pod['metadata']['name']}",
                self.core.delete_namespaced_pod,
                pod["metadata"]["name"],
                ns,
                grace_period_seconds=max(0, int(grace)),
                ok=(404,),
            )

    def watch(self, timeout: float) -> Iterator[Status]:
        self._watch()
        try:
            first = self.changes.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return
        yield first
        while True:
            try:
                yield self.changes.get_nowait()
            except queue.Empty:
                return

    def find(self, pool: str) -> list[Status]:
        """Every Job of ``pool`` the cluster holds, as its Status now (listed, not watched)."""
        selector = f"{POOL_LABEL}={manifests.label_value(pool)}"
        found: dict[Key, Status] = {}
        for kind, lister in self._listers():
            listed = self._call(f"list {kind}s", lister, label_selector=selector)
            with self.lock:
                for item in (listed or {}).get("items") or []:
                    item.setdefault("kind", kind)
                    self.tracker.feed(item)
                    key = manifests.key_of(item)
                    if kind == "Job" and key is not None:
                        meta = item["metadata"]
                        self.names[key] = (meta["namespace"], meta["name"])
                        found[key] = Status(key, "queued", "found")
        with self.lock:
            return [self.tracker.status(key) or s for key, s in found.items()]

    def forget(self, key: Key) -> None:
        """Its end is recorded. A Job whose pod never started (it could not pull its image, or
        was stopped while queued) is deleted: it would wait on forever; any other stays for the
        cluster to remove after its TTL, with its log."""
        with self.lock:
            now = self.tracker.status(key)
            ran = key in self.tracker.ran
            self.tracker.forget(key)
            where = self.names.pop(key, None)
        if where is not None and now is not None and now.phase == "ended" and now.blameless and not ran:
            self._delete_job(*where)

    def _delete_job(self, ns: str, name: str) -> None:
        """Delete a Job that never ran, its pods with it (the cluster's garbage collector)."""
        delete = self.batch.delete_namespaced_job
        self._call(f"delete Job {ns}/{name}", delete, name, ns, propagation_policy="Background", ok=(404,))

    def close(self) -> None:
        """End the watches; every Job runs on (see the module's docstring)."""
        self.closed.set()
        for w in list(self.watches):
            w.stop()
        for t in self.threads:
            t.join(timeout=5)

    # -- the watches ---------------------------------------------------------------------------
    def _listers(self) -> list[tuple[str, Callable[..., Any]]]:
        out: list[tuple[str, Callable[..., Any]]] = [
            ("Job", self.batch.list_job_for_all_namespaces),
            ("Pod", self.core.list_pod_for_all_namespaces),
        ]
        if self.settings.kueue:
            group, version, plural = KUEUE

            def workloads(**kw: Any) -> Any:
                """Every Workload: Kueue copies none of a Job's labels to its Workload (unless its
                configuration's labelKeysToCopy says so); the tracker matches them to our Jobs
                by the Job's uid and owner reference, and ignores the others."""
                kw.pop("label_selector", None)
                return self.custom.list_cluster_custom_object(group, version, plural, **kw)

            out.append(("Workload", workloads))
        return out

    def _watch(self) -> None:
        if self.threads or self.closed.is_set():
            return
        for kind, lister in self._listers():
            t = threading.Thread(
                target=self._stream, args=(kind, lister), name=f"k8s-watch-{kind}", daemon=True
            )
            self.threads.append(t)
            t.start()

    def _stream(self, kind: str, lister: Callable[..., Any]) -> None:
        """List, then watch from the list's resourceVersion; on 410 Gone, list again."""
        version: str | None = None
        pause = 0.5
        while not self.closed.is_set():
            try:
                if version is None:
                    version = self._relist(kind, lister)
                version = self._follow(kind, lister, version)
                pause = 0.5
            except self.k.client.ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list again
                    version = None
                    continue
                log.warning("watching %ss at %s: %s %s", kind, self.host, exc.status, exc.reason)
                self.closed.wait(pause)
                pause = min(pause * 2, 30.0)
            except Exception as exc:  # the connection dropped: watch again, from where we were
                log.warning("watching %ss at %s: %s", kind, self.host, type(exc).__name__)
                self.closed.wait(pause)
                pause = min(pause * 2, 30.0)

    def _relist(self, kind: str, lister: Callable[..., Any]) -> str:
        """Everything of the pool now; a pod that vanished while we were not watching was
        deleted (its node lost, or by hand). The list's resourceVersion."""
        body = json.loads(lister(label_selector=self.selector, _preload_content=False).data)
        items = body.get("items") or []
        for item in items:
            item.setdefault("kind", kind)
            self._seen(item, deleted=False)
        if kind == "Pod":
            names = {str((i.get("metadata") or {}).get("name")) for i in items}
            with self.lock:
                gone = self.tracker.pods_not_in(names)
            for pod in gone:
                self._seen(pod, deleted=True)
        return str(body["metadata"]["resourceVersion"])

    def _follow(self, kind: str, lister: Callable[..., Any], version: str | None) -> str | None:
        """One watch request, until the server ends it; the last resourceVersion seen."""
        w = self.k.watch.Watch()
        self.watches.append(w)
        try:
            for event in w.stream(
                lister,
                label_selector=self.selector,
                resource_version=version,
                timeout_seconds=WATCH_SECONDS,
                allow_watch_bookmarks=True,
            ):
                if self.closed.is_set():
                    w.stop()
                    break
                obj = event.get("raw_object") or {}
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") == "BOOKMARK":
                    continue
                obj.setdefault("kind", kind)
                self._seen(obj, deleted=event.get("type") == "DELETED")
        finally:
            self.watches.remove(w)
        return version

    def _seen(self, obj: Mapping[str, Any], deleted: bool) -> None:
        with self.lock:
            change = self.tracker.feed(obj, deleted=deleted)
        if change is not None:
            self.changes.put(change)

    # -- calls ---------------------------------------------------------------------------------
    def _where(self, key: Key) -> tuple[str, str]:
        with self.lock:
            where = self.names.get(key)
        if where is None:
            raise ExecutorError(f"attempt {manifests.key_text(key)} has no Job in this executor")
        return where

    def _call(
        self, what: str, fn: Callable[..., Any], *args: Any, ok: tuple[int, ...] = (), **kw: Any
    ) -> Any:
        """One API call, its JSON body as a dict; ``ok`` statuses give None; any other failure is
        one ``ExecutorError`` naming the call, the server and the API's own message."""
        try:
            response = fn(*args, _preload_content=False, _request_timeout=CONNECT_TIMEOUT * 3, **kw)
            return json.loads(response.data or b"{}")
        except self.k.client.ApiException as exc:
            if exc.status in ok:
                return None
            raise ExecutorError(
                f"{what} at {self.host}: {exc.status} {exc.reason}: {_message(exc)}"
            ) from None
        except Exception as exc:
            raise ExecutorError(
                f"cannot reach the Kubernetes cluster at {self.host} to {what} ({type(exc).__name__})"
            ) from None


def _message(exc: Any) -> str:
    """The API's own message (a Status object's ``message``: the field and the complaint)."""
    try:
        return " ".join(str(json.loads(exc.body).get("message", "")).split())[:500]
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def wait(backend: KubernetesBackend, key: Key, timeout: float) -> Status | None:
    """The attempt's Status once it ends, or None after ``timeout`` (for the live test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for status in backend.watch(min(1.0, deadline - time.monotonic())):
            if status.key == key and status.phase == "ended":
                return status
    return None
