"""What a project's ``conveyor.toml`` says about its git remote: what a push starts, what is
configuration (only a lead may change it), and which outputs are results.

    [project]
    pipelines = ["pipes.py"]
    team = "analytics"
    configuration = ["settings/"]      # besides conveyor.toml itself: files, folders or globs

    [[push]]                           # a push to a matching branch starts these runs
    branch = "main"                    # a glob: "release/*"
    pipelines = ["daily_sales"]
    params = { region = "eu" }

    [results]                          # committed on results/<branch> when a run ends
    paths = ["out/*.csv", "figures/"]
    max_file_size = 5_000_000          # larger files are kept by hash, with a pointer in git

Read from the pushed commit's own ``conveyor.toml``: what a push starts is what that commit says.
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import LoadError

#: The project's file: always configuration.
FILE = "conveyor.toml"

#: Result files larger than this (bytes) are kept by hash, not in git (``[results] max_file_size``).
MAX_FILE_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Push:
    branch: str  # a glob over branch names
    pipelines: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, branch: str) -> bool:
        return fnmatch.fnmatchcase(branch, self.branch)


@dataclass(frozen=True, slots=True)
class Settings:
    pushes: tuple[Push, ...] = ()
    configuration: tuple[str, ...] = (FILE,)
    results: tuple[str, ...] = ()
    max_file_size: int = MAX_FILE_SIZE

    def starts(self, branch: str) -> list[Push]:
        return [p for p in self.pushes if p.matches(branch)]


def parse(text: str, where: str = FILE) -> Settings:
    """The settings of one ``conveyor.toml``; ``LoadError`` naming the bad key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LoadError(f"{where}: {exc}") from None
    project = data.get("project", {})
    extra = project.get("configuration", []) if isinstance(project, dict) else []
    if not _strings(extra):
        raise LoadError(f'{where}: [project] configuration must be a list of paths, like ["settings/"]')
    pushes = data.get("push", [])
    if not isinstance(pushes, list) or not all(isinstance(p, dict) for p in pushes):
        raise LoadError(f'{where}: push must be tables: [[push]] branch = "main" pipelines = ["name"]')
    results = data.get("results", {})
    if not isinstance(results, dict):
        raise LoadError(f'{where}: results must be a table: [results] paths = ["out/"]')
    paths = results.get("paths", [])
    if not _strings(paths):
        raise LoadError(f'{where}: [results] paths must be a list of paths or globs, like ["out/*.csv"]')
    size = results.get("max_file_size", MAX_FILE_SIZE)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LoadError(f"{where}: [results] max_file_size must be a number of bytes, like 5000000")
    return Settings(tuple(_push(p, where) for p in pushes), (FILE, *extra), tuple(paths), size)


def _push(entry: dict[str, Any], where: str) -> Push:
    branch = entry.get("branch")
    names = entry.get("pipelines")
    params = entry.get("params", {})
    if not isinstance(branch, str) or not branch:
        raise LoadError(f'{where}: each [[push]] needs a branch, like branch = "main"')
    if not _strings(names) or not names:
        raise LoadError(f'{where}: [[push]] for {branch}: pipelines must list names, like ["daily_sales"]')
    if not isinstance(params, dict):
        raise LoadError(f"{where}: [[push]] for {branch}: params must be a table, like {{ n = 2 }}")
    return Push(branch, tuple(names), params)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def is_configuration(path: str, configuration: Iterable[str]) -> bool:
    """Is ``path`` (relative to the repository's root) configuration: one of the entries, under
    a folder entry, or matched by a glob entry?"""
    for entry in configuration:
        entry = entry.removeprefix("./").rstrip("/")
        if path == entry or path.startswith(entry + "/") or fnmatch.fnmatchcase(path, entry):
            return True
    return False


__all__ = ["FILE", "MAX_FILE_SIZE", "Push", "Settings", "is_configuration", "parse"]
