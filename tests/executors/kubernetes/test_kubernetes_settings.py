"""``[executor.kubernetes]``: a team's namespace and queue, and one line for a wrong setting."""

from __future__ import annotations

import pytest

from conveyor.errors import ExecutorError
from conveyor.executors.kubernetes.settings import parse


def test_a_teams_namespace_named_mapped_or_templated() -> None:
    plain = parse({})
    assert plain.namespace_of("Data Science") == "conveyor-data-science"
    assert plain.namespace_of("") == "conveyor"
    mapped = parse({"namespaces": {"ds": "ml-prod"}, "namespace": "batch-{team}"})
    assert mapped.namespace_of("ds") == "ml-prod"
    assert mapped.namespace_of("bi") == "batch-bi"
    assert mapped.namespace_of("") == "batch"
    assert parse({"namespace": "shared"}).namespace_of("bi") == "shared"


def test_settings_from_variables_are_strings() -> None:
    s = parse({"namespaces": "ds=ml-prod, bi=bi-jobs", "kueue": "true", "ttl": "60", "queues": "ds=gpu"})
    assert dict(s.namespaces) == {"ds": "ml-prod", "bi": "bi-jobs"}
    assert s.kueue is True and s.ttl == 60
    assert s.queue_of("ds") == "gpu" and s.queue_of("bi") == "bi-queue"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"namespace": "Not_A_Name"}, "namespace = 'Not_A_Name' is not a Kubernetes name"),
        ({"namespaces": {"ds": "x" * 64}}, "namespaces.ds"),
        ({"namespaces": "ds"}, "namespaces must be a table"),
        ({"kueue": "maybe"}, "kueue must be true or false"),
        ({"ttl": -1}, "ttl must be a whole number"),
        ({"api": "conveyor:8080"}, "api must be the execution API's URL"),
        ({"imagee": "x"}, "has no setting 'imagee'"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(raw: dict[str, object], says: str) -> None:
    with pytest.raises(ExecutorError) as err:
        parse(raw)
    assert says in str(err.value) and "\n" not in str(err.value)
