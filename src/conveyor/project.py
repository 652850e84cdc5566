"""A project: the directory with a ``conveyor.toml`` that lists where its pipelines are.

    # conveyor.toml
    [project]
    pipelines = ["pipelines/sales.py", "mypackage.reports", "etl.py:nightly"]

Each entry is a file or module (every pipeline it defines) or ``TARGET:NAME`` (that one). Paths
are relative to the project's directory. ``team = "analytics"`` (in ``[project]``) names the
team that owns the project: its runs are that team's (``conveyor.auth``).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import LoadError
from conveyor.loader import forget, load_module, load_pipeline, split_target
from conveyor.pipelines import PipelineDef

FILE = "conveyor.toml"


@dataclass(frozen=True, slots=True)
class Entry:
    target: str  # how to load it again: absolute file path or module, and :name
    pipeline: PipelineDef


@dataclass(frozen=True, slots=True)
class Project:
    root: Path
    sources: tuple[str, ...]
    team: str | None = None  # the team that owns it: its runs are the team's

    def reread(self) -> Project:
        """The project as its ``conveyor.toml`` says now (a reload sees entries added)."""
        return read(self.root / FILE)

    def pipelines(self, *, fresh: bool = False) -> list[Entry]:
        """Every pipeline the project lists, loaded (an entry that fails to load raises);
        ``fresh``: their code imported anew (a reload), not reused from an earlier load."""
        out: list[Entry] = []
        for source in self.sources:
            if source.startswith("luigi:"):  # a Luigi task class: luigi:MODULE.TaskClass
                if fresh:
                    forget(source.removeprefix("luigi:").rpartition(".")[0])
                pipe = load_pipeline(source)
                out.append(Entry(f"luigi:{pipe.name}", pipe))
                continue
            where, name = split_target(source)
            path = self.root / where
            where = str(path.resolve()) if where.endswith(".py") or "/" in where else where
            if fresh:
                forget(where)
            if name is not None:
                pipe = load_pipeline(f"{where}:{name}")
                out.append(Entry(f"{where}:{pipe.name}", pipe))
                continue
            module = load_module(where)
            found = [v for v in vars(module).values() if isinstance(v, PipelineDef)]
            if not found:
                raise LoadError(f"{FILE}: {source} defines no pipeline")
            out += [Entry(f"{where}:{p.name}", p) for p in sorted(found, key=lambda p: p.name)]
        return out


def find(start: Path | None = None) -> Project | None:
    """The project whose ``conveyor.toml`` is in ``start`` (default: the current directory) or
    above it; None if there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / FILE
        if path.is_file():
            return read(path)
    return None


def read(path: Path) -> Project:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise LoadError(f"{path}: {exc}") from None
    section = data.get("project", {})
    sources = section.get("pipelines", []) if isinstance(section, dict) else None
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise LoadError(f'{path}: [project] pipelines must be a list of strings, like ["pipelines/sales.py"]')
    team = section.get("team", data.get("team")) if isinstance(section, dict) else data.get("team")
    if team is not None and (not isinstance(team, str) or not team.strip()):
        raise LoadError(f'{path}: [project] team must be a team\'s name, like team = "analytics"')
    return Project(path.parent.resolve(), tuple(sources), team)


def team_of(target: str, workdir: str | None = None) -> str | None:
    """The team of the project a pipeline's code belongs to: the ``conveyor.toml`` beside its
    file or above it (a module's: above ``workdir``, else the current directory); None when
    there is none, or it names no team."""
    where, _ = split_target(target)
    start = Path(where).parent if where.endswith(".py") else Path(workdir or Path.cwd())
    try:
        found = find(start)
    except LoadError:
        return None
    return None if found is None else found.team
