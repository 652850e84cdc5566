"""The submit descriptions of the demo pipeline, checked offline with HTCondor's own parsers.

No schedd can run here: what the bindings check without one (docs/htcondor.md) is that each
description parses as a submit file and reads back the same, and that its ClassAd expressions
parse and evaluate as HTCondor would evaluate them against the job's ad.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conveyor.errors import ExecutorError
from conveyor.executors.batch import Spec, labels
from conveyor.executors.command import RUNNER, runner_env
from conveyor.executors.htcondor.preview import Preview, previews
from conveyor.executors.htcondor.settings import CondorSettings, parse
from conveyor.executors.htcondor.submit import (
    TIMEOUT_SLACK,
    arguments,
    description,
    parse_attempt,
    submit_text,
)
from conveyor.executors.htcondor.validate import validate
from conveyor.resources import Resources
from conveyor.runner import Job

htcondor2 = pytest.importorskip("htcondor2", reason="pip install -e '.[htcondor]' (the test extra has it)")
classad2 = pytest.importorskip("classad2")

DEMO = str(Path(__file__).parents[3] / "examples" / "sales" / "pipeline.py") + ":daily_sales"
TOKEN = "tok-3f9a1c-secret"


@pytest.fixture(scope="module")
def demo() -> list[Preview]:
    """The demo's descriptions for team analytics (built once: loading the pipeline is the cost)."""
    settings = parse({"groups": {"ml": "group_physics.ml"}, "requirements": '(TARGET.OpSys == "LINUX")'})
    return previews(DEMO, {"days": "2"}, settings, api="http://submit.example:8080", team="analytics")


def spec(**kw: object) -> Spec:
    job = Job("20261207-041622-2586b8", "b90fb96bb28ca53e", 2, "l", "a", {}, "t", {})
    base: dict[str, object] = dict(
        key=("20261207-041622-2586b8", "b90fb96bb28ca53e", 2), name="cv-x-b90fb96bb2-2", command=RUNNER,
        env=runner_env(job, "http://api:1"), token=TOKEN, resources=Resources(), timeout=None,
        team="", labels=labels("p1", job), network=False, job=job,
    )  # fmt: skip
    base.update(kw)
    return Spec(**base)  # type: ignore[arg-type]


def test_every_demo_description_parses_and_reads_back_with_htcondor(demo: list[Preview]) -> None:
    assert len(demo) == 10  # the database, 4 tasks per day for 2 days, the report
    for p in demo:
        parsed = validate(p.description)
        assert parsed["universe"] == "vanilla"
        assert parsed["accounting_group"] == "group_analytics"
        assert parsed["requirements"] == '(TARGET.OpSys == "LINUX")'
        # The attempt is in the ad, as a string a new owner parses back to the attempt's key.
        attempt = classad2.ExprTree(parsed["MY.ConveyorAttempt"]).eval()
        assert parse_attempt(attempt) == p.spec.key
        assert classad2.ExprTree(parsed["MY.ConveyorPool"]).eval() == "cv-preview"


def test_the_demo_runs_the_runner_with_its_job_and_the_api_from_the_execute_node(demo: list[Preview]) -> None:
    from conveyor.executors.command import decode_job

    p = demo[0]
    submit = htcondor2.Submit(submit_text(p.description))
    assert submit["executable"] == "/usr/bin/env" and submit["transfer_executable"] == "false"
    assert submit.expand("arguments") == '"python3 -m conveyor.executors.runjob"'
    env = dict(w.split("=", 1) for w in submit.expand("environment").strip('"').split())
    assert decode_job(env["CONVEYOR_JOB"]) == p.spec.job
    assert env["CONVEYOR_EXECUTION_API"] == "http://submit.example:8080"
    assert env["CONVEYOR_ATTEMPT_TOKEN_FILE"] == "conveyor-token"
    assert p.description["transfer_input_files"].endswith("/conveyor-token")


def test_the_token_is_never_in_the_description_only_its_file() -> None:
    d = description(spec(env={**runner_env(spec().job, "http://api:1"), "CONVEYOR_ATTEMPT_TOKEN": TOKEN}),
                    CondorSettings(), "p1")  # fmt: skip
    assert not any(TOKEN in v for v in d.values())
    assert "CONVEYOR_ATTEMPT_TOKEN=" not in d["environment"]


def test_resources_become_requests_in_htcondor_units() -> None:
    r = Resources(cpu=4, memory=int(1.5 * 2**30) + 1, gpu=2, custom={"licences": 3})
    d = description(spec(resources=r), CondorSettings(), "p1")
    parsed = validate(d)
    assert (parsed["request_cpus"], parsed["request_memory"], parsed["request_gpus"]) == ("4", "1537", "2")
    assert parsed["request_licences"] == "3"  # a machine resource the pool declares
    assert "request_memory" not in description(
        spec(), CondorSettings(), "p1"
    )  # none asked: the pool's default


def test_a_team_maps_to_its_accounting_group_or_group_team() -> None:
    s = parse({"groups": {"ml": "group_physics.ml"}})
    d = description(spec(team="ml"), s, "p1", user="alice")
    assert (d["accounting_group"], d["accounting_group_user"]) == ("group_physics.ml", "alice")
    assert description(spec(team="data science"), s, "p1")["accounting_group"] == "group_data_science"
    assert "accounting_group" not in description(spec(team=""), s, "p1")


def test_the_timeout_is_a_periodic_remove_that_htcondor_evaluates_true_only_after_it() -> None:
    d = description(
        spec(timeout=30.0, env=runner_env(spec().job, "http://api:1", 30.0)), CondorSettings(), "p1"
    )
    validate(d)
    assert "CONVEYOR_TIMEOUT=30" in d["environment"]  # the runner's own clock comes first
    expr = classad2.ExprTree(d["periodic_remove"])
    now = int(time.time())
    just_started = classad2.ClassAd({"JobStatus": 2, "JobCurrentStartDate": now - 5})
    overdue = classad2.ClassAd({"JobStatus": 2, "JobCurrentStartDate": now - 30 - TIMEOUT_SLACK - 5})
    idle_long = classad2.ClassAd({"JobStatus": 1, "JobCurrentStartDate": now - 3600})
    assert (expr.eval(just_started), expr.eval(overdue), expr.eval(idle_long)) == (False, True, False)


def test_an_image_runs_in_the_container_universe() -> None:
    d = description(spec(), parse({"image": "registry.example/sales:abc123"}), "p1")
    parsed = validate(d)
    assert (parsed["universe"], parsed["container_image"]) == ("container", "registry.example/sales:abc123")


def test_arguments_with_spaces_and_quotes_survive_htcondor_quoting() -> None:
    words = ["-c", "print('a b')", 'say "hi"']
    submit = htcondor2.Submit({"arguments": arguments(words)})
    assert submit.expand("arguments") == arguments(words)
    assert arguments(words) == "\"-c 'print(''a b'')' 'say \"\"hi\"\"'\""


def test_a_python_on_the_execute_nodes_is_the_executable() -> None:
    d = description(spec(), parse({"python": "/opt/venv/bin/python"}), "p1")
    assert (d["executable"], d["arguments"]) == ("/opt/venv/bin/python", '"-m conveyor.executors.runjob"')


def test_a_bad_requirements_expression_is_one_line_naming_it() -> None:
    d = description(spec(), parse({"requirements": "(TARGET.Memory >= "}), "p1")
    with pytest.raises(ExecutorError, match=r"requirements = \(TARGET.Memory >= is not a ClassAd") as err:
        validate(d)
    assert "\n" not in str(err.value)


def test_files_live_under_the_folder_setting(tmp_path: Path) -> None:
    d = description(spec(), parse({"folder": str(tmp_path)}), "p1")
    assert {d["output"], d["error"], d["log"]} == {
        str(tmp_path / "cv-x-b90fb96bb2-2" / n) for n in ("out", "err", "log")
    }
    assert os.path.isabs(d["transfer_input_files"])
