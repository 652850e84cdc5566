"""``[executor.htcondor]``: read, checked, one line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import ExecutorError
from conveyor.executors.choice import choose
from conveyor.executors.htcondor.settings import group_of, parse


def test_settings_from_the_toml_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text(
        '[executor]\ndefault = "htcondor"\n[executor.htcondor]\nschedd = "submit.example"\n'
        'groups = { analytics = "group_physics.analytics" }\n'
    )
    env = {"CONVEYOR_HTCONDOR_COLLECTOR": "cm.example:9618", "CONVEYOR_HTCONDOR_POLL": "5"}
    s = parse(choose(root=tmp_path, environ=env).of("htcondor"))
    assert (s.schedd, s.collector, s.poll) == ("submit.example", "cm.example:9618", 5.0)
    assert s.schedd_name == "submit.example (collector cm.example:9618)"
    assert group_of("analytics", s) == "group_physics.analytics"
    assert parse({"groups": "a=group_a, b=group_x.b"}).groups == {"a": "group_a", "b": "group_x.b"}
    assert parse({"address": "other.example"}).schedd == "other.example"  # --executor-address


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ({"schedule": "x"}, "has no setting 'schedule'"),
        ({"api": "submit:8080"}, "api must be a URL execute nodes reach"),
        ({"groups": {"ml": "group ml"}}, "team 'ml' maps to 'group ml', which is not an accounting group"),
        ({"groups": "ml"}, "groups must read team=group,team2=group2"),
        ({"poll": "soon"}, "poll must be seconds > 0"),
        ({"image": ""}, "image must be a non-empty string"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(raw: dict[str, object], said: str) -> None:
    with pytest.raises(ExecutorError, match=said) as err:
        parse(raw)
    assert str(err.value).startswith("[executor.htcondor]") and "\n" not in str(err.value)
