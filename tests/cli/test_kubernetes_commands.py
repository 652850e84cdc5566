"""``conveyor kubernetes manifests`` and ``--executor kubernetes`` from the command line."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import Project

DEMO = str(Path(__file__).resolve().parents[2] / "examples/sales/pipeline.py") + ":daily_sales"


def test_manifests_prints_the_teams_objects_then_each_attempts(project: Project) -> None:
    project.write(
        "conveyor.toml", '[executor.kubernetes]\nimage = "registry.example/sales:1"\nkueue = true\n'
    )
    done = project.cli("kubernetes", "manifests", DEMO, "-p", "days=1", "--team", "analytics",
                       "--quota", "cpu=8", "--quota", "memory=16GiB", check=True)  # fmt: skip
    docs = list(yaml.safe_load_all(done.stdout))
    kinds = [d["kind"] for d in docs]
    assert kinds[:3] == ["Namespace", "ResourceQuota", "LocalQueue"]
    assert kinds[3:] == ["Secret", "Job"] * 6  # the shop, 4 tasks of the day, the report
    assert {d["metadata"]["namespace"] for d in docs[1:]} == {"conveyor-analytics"}
    assert docs[1]["spec"]["hard"]["limits.memory"] == "16384Mi"
    assert all(d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/sales:1"
               for d in docs if d["kind"] == "Job")  # fmt: skip


def test_bad_input_is_one_line_and_exit_2(project: Project) -> None:
    for args in (("--format", "xml"), ("--quota", "cpu=lots")):
        done = project.cli("kubernetes", "manifests", DEMO, *args)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_an_unreachable_cluster_refuses_the_run_naming_its_server_not_its_token(project: Project) -> None:
    project.write("kubeconfig", yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "s3cret-bearer"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    project.write("conveyor.toml", '[executor.kubernetes]\nkubeconfig = "kubeconfig"\n')
    done = project.cli("run", DEMO, "--executor", "kubernetes")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "https://127.0.0.1:9" in line and "s3cret-bearer" not in line


def test_the_resource_quota_comes_from_the_teams_quota_in_the_store(project: Project) -> None:
    project.cli("teams", "add", "analytics", check=True)
    project.cli("teams", "quota", "analytics", "--cpu", "4", "--memory", "8GiB", check=True)
    done = project.cli("kubernetes", "manifests", DEMO, "--team", "analytics", "-p", "days=1", check=True)
    (quota,) = [d for d in yaml.safe_load_all(done.stdout) if d["kind"] == "ResourceQuota"]
    assert quota["spec"]["hard"] == {
        "requests.cpu": "4", "limits.cpu": "4", "requests.memory": "8192Mi", "limits.memory": "8192Mi",
    }  # fmt: skip
