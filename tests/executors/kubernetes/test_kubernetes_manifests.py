"""The manifests of the demo pipeline's attempts and team, checked offline against the official
Kubernetes schema (kubernetes-validate, strict) and Kueue's own CRD schema (vendored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conveyor.errors import ExecutorError
from conveyor.executors.batch import Spec, labels
from conveyor.executors.kubernetes import manifests
from conveyor.executors.kubernetes.preview import RUN_ID, TOKEN, check, preview
from conveyor.executors.kubernetes.settings import parse
from conveyor.quotas.model import TeamQuota
from conveyor.resources import Resources
from conveyor.runner import Job

ROOT = Path(__file__).resolve().parents[3]
DEMO = str(ROOT / "examples/sales/pipeline.py") + ":daily_sales"
KUEUE = Path(__file__).parent / "kueue"
#: The oldest and newest Kubernetes schemas kubernetes-validate 1.37 ships that we claim.
VERSIONS = ("1.29", "1.37")
SETTINGS = parse({"kueue": True, "image": "registry.example/sales:0123abc", "api": "http://conveyor:8080"})
QUOTA = TeamQuota("Analytics Team", {"cpu": 16, "memory": 64 * 2**30, "gpu": 2, "licences": 3})


@pytest.fixture(scope="module")
def demo() -> list[dict[str, Any]]:
    return preview(DEMO, {"days": "3"}, SETTINGS, team="Analytics Team", quota=QUOTA)


def _kinds(found: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in found if m["kind"] == kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_demo_manifest_is_valid_for_kubernetes(demo: list[dict[str, Any]], version: str) -> None:
    built_in = [m for m in demo if not m["apiVersion"].startswith("kueue.x-k8s.io/")]
    assert {m["kind"] for m in built_in} == {"Namespace", "ResourceQuota", "Secret", "Job"}
    for m in built_in:
        kubernetes_validate.validate(m, version, strict=True)


def test_the_local_queue_is_valid_for_kueues_crd(demo: list[dict[str, Any]]) -> None:
    crd = yaml.safe_load((KUEUE / "kueue.x-k8s.io_localqueues.yaml").read_text())
    (queue,) = _kinds(demo, "LocalQueue")
    version = next(v for v in crd["spec"]["versions"] if v["name"] == queue["apiVersion"].split("/")[1])
    assert version["served"] and version["storage"], "the version Conveyor writes is Kueue's current one"
    jsonschema.validate(queue, version["schema"]["openAPIV3Schema"])
    assert queue["metadata"]["namespace"] == "conveyor-analytics-team"


def test_every_job_names_its_teams_queue_as_kueue_reads_it(demo: list[dict[str, Any]]) -> None:
    schema = json.loads((KUEUE / "workload-queuename.schema.json").read_text())
    (queue,) = _kinds(demo, "LocalQueue")
    for job in _kinds(demo, "Job"):
        name = job["metadata"]["labels"][manifests.QUEUE_LABEL]
        jsonschema.validate(name, schema)
        assert name == queue["metadata"]["name"]
        assert job["spec"]["suspend"] is True  # Kueue admits it by unsuspending it


def test_a_job_per_task_instance_with_its_token_only_in_a_secret(demo: list[dict[str, Any]]) -> None:
    jobs, secrets = _kinds(demo, "Job"), _kinds(demo, "Secret")
    assert len(jobs) == len(secrets) == 1 + 3 * 4 + 1  # the shop; 3 days of 4 tasks; the report
    for job, secret in zip(jobs, secrets, strict=True):
        spec = job["spec"]
        assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
        assert spec["ttlSecondsAfterFinished"] == 3600
        (container,) = spec["template"]["spec"]["containers"]
        assert container["image"] == "registry.example/sales:0123abc"
        assert TOKEN not in json.dumps(job)
        token = next(e for e in container["env"] if e["name"] == "CONVEYOR_ATTEMPT_TOKEN")
        assert token["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
        assert secret["stringData"]["token"] == TOKEN
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["CONVEYOR_EXECUTION_API"] == "http://conveyor:8080"
        assert job["metadata"]["labels"]["conveyor.io/run"] == RUN_ID
        assert container["resources"]["requests"] == container["resources"]["limits"]


def test_the_teams_quota_becomes_a_resource_quota(demo: list[dict[str, Any]]) -> None:
    (rq,) = _kinds(demo, "ResourceQuota")
    assert rq["spec"]["hard"] == {
        "requests.cpu": "16",
        "limits.cpu": "16",
        "requests.memory": "65536Mi",
        "limits.memory": "65536Mi",
        "requests.nvidia.com/gpu": "2",
    }  # "licences" is Conveyor's own resource: the cluster never hears of it


def _spec(run_id: str = "r1", **kw: Any) -> Spec:
    job = Job(run_id, "abc123", 2, "", "", {}, "p.py:p", {})
    base: dict[str, Any] = {
        "key": (run_id, "abc123", 2),
        "name": "cv-r1-abc123-2",
        "command": ("python3",),
        "env": {},
        "token": "t0ken",
        "resources": Resources(cpu=2, memory=300 * 2**20 + 1, gpu=1, custom={"example.com/fpga": 1, "db": 1}),
        "timeout": 90.5,
        "team": "",
        "labels": labels("cv-pool", job),
        "network": False,
        "job": job,
    }
    return Spec(**{**base, **kw})


def test_resources_deadline_and_namespace_of_one_attempt() -> None:
    job = manifests.job(_spec(), parse({}))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {
        "cpu": "2",
        "memory": "301Mi",  # rounded up: the task gets at least what it asked for
        "nvidia.com/gpu": "1",
        "example.com/fpga": "1",
    }
    assert job["spec"]["activeDeadlineSeconds"] == 91 + manifests.DEADLINE_SLACK  # a backstop
    assert job["metadata"]["namespace"] == "conveyor"  # a run of no team
    assert "suspend" not in job["spec"] and manifests.QUEUE_LABEL not in job["metadata"]["labels"]
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


def test_the_key_comes_back_from_the_objects_the_cluster_returns() -> None:
    spec = _spec("2026-12-07T04:00:00_r")
    job = manifests.job(spec, parse({}))
    pod = {"metadata": job["spec"]["template"]["metadata"]}
    assert manifests.key_of(job) == manifests.key_of(pod) == spec.key
    assert job["metadata"]["labels"]["conveyor.io/run"] == "2026-12-07T04-00-00_r"  # label syntax


def test_an_invalid_manifest_is_one_line_naming_the_field() -> None:
    job = manifests.job(_spec(), parse({}))
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = [2]
    with pytest.raises(ExecutorError) as err:
        check([job])
    message = str(err.value)
    assert "\n" not in message
    assert "Job conveyor/cv-r1-abc123-2" in message
    assert "spec.template.spec.containers.0.resources.limits.cpu" in message
