"""Turning the cache off: the project's ``[cache] enabled``, and ``CONVEYOR_CACHE`` over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.cache.settings import enabled, project_root
from conveyor.errors import LoadError


def test_the_project_setting_and_the_variable_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVEYOR_CACHE", raising=False)
    assert enabled(tmp_path)  # no conveyor.toml: on
    (tmp_path / "conveyor.toml").write_text("[cache]\nenabled = false\n")
    assert not enabled(tmp_path)
    monkeypatch.setenv("CONVEYOR_CACHE", "1")
    assert enabled(tmp_path)
    monkeypatch.setenv("CONVEYOR_CACHE", "perhaps")
    with pytest.raises(LoadError, match="CONVEYOR_CACHE='perhaps' is not a yes or a no"):
        enabled(tmp_path)


def test_a_bad_setting_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_CACHE", raising=False)
    (tmp_path / "conveyor.toml").write_text('[cache]\nenabled = "nope"\n')
    with pytest.raises(LoadError, match=r"\[cache\] enabled = 'nope' must be true or false"):
        enabled(tmp_path)


def test_the_project_is_the_nearest_folder_with_its_file_or_git(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert project_root(str(deep)) == tmp_path.resolve()
