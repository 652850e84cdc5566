from __future__ import annotations

import pytest

from conveyor.errors import LoadError
from conveyor.git.settings import FILE, is_configuration, parse

TOML = """
[project]
pipelines = ["pipes.py"]
configuration = ["settings/", "*.lock"]

[[push]]
branch = "main"
pipelines = ["daily_sales"]
params = { region = "eu" }

[[push]]
branch = "release/*"
pipelines = ["daily_sales", "report"]

[results]
paths = ["out/"]
"""


def test_a_push_to_a_branch_starts_what_its_matching_entries_list() -> None:
    settings = parse(TOML)
    main = [(p.pipelines, dict(p.params)) for p in settings.starts("main")]
    assert main == [(("daily_sales",), {"region": "eu"})]
    assert [p.pipelines for p in settings.starts("release/2.0")] == [("daily_sales", "report")]
    assert settings.starts("feature") == []
    assert settings.results == ("out/",)


def test_configuration_is_conveyor_toml_and_what_it_names() -> None:
    conf = parse(TOML).configuration
    assert conf[0] == FILE
    for path in ("conveyor.toml", "settings/a.toml", "settings/deep/b.yaml", "uv.lock"):
        assert is_configuration(path, conf), path
    for path in ("pipes.py", "settingsx/a.toml", "src/conveyor.toml.bak"):
        assert not is_configuration(path, conf), path


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[[push]]\npipelines = ["a"]', "each [[push]] needs a branch"),
        ('[[push]]\nbranch = "main"\npipelines = []', "pipelines must list names"),
        ('[[push]]\nbranch = "main"\npipelines = ["a"]\nparams = 3', "params must be a table"),
        ("[results]\npaths = 'out'", "[results] paths must be a list"),
        ("[results]\nmax_file_size = -1", "max_file_size must be a number of bytes"),
        ('[project]\nconfiguration = "x"', "[project] configuration must be a list"),
        ("[[push]\n", "conveyor.toml:"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it(text: str, says: str) -> None:
    with pytest.raises(LoadError) as caught:
        parse(text)
    assert says in str(caught.value) and "\n" not in str(caught.value)
