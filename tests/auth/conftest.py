"""A world of people for the auth tests: a project of team a served over real HTTP, two teams,
one user per role, a finished run of each team and a backfill of the project."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from api.live import in_thread, make_project
from conftest import Project
from conveyor import engine
from conveyor import project as projects
from conveyor.api import create_app
from conveyor.auth import people
from conveyor.service import Service
from conveyor.store import Store, open_store

#: The users, by the part they play: name -> (admin, {team: role}).
CAST: dict[str, tuple[bool, dict[str, str]]] = {
    "admin": (True, {}),
    "lead": (False, {"a": "lead"}),
    "member": (False, {"a": "member"}),
    "viewer": (False, {"a": "viewer"}),
    "other": (False, {"b": "member"}),
}


@dataclass
class World:
    url: str
    store: Store
    service: Service
    project: Project
    tokens: dict[str, str]
    run_a: str
    run_b: str
    backfill: str
    seq: list[int] = field(default_factory=lambda: [0])

    def client(self, who: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url, timeout=30, headers=headers)

    def next(self) -> int:
        self.seq[0] += 1
        return self.seq[0]


def finished_run(service: Service, team: str | None, n: int) -> str:
    """A submitted run of quick(n) of ``team``, every task succeeded (no scheduler needed)."""
    entry = service.entry("quick")
    run, instances, parts = engine.submission(
        entry.pipeline, entry.target, {"n": n}, workdir=str(service.where)
    )
    run = dataclasses.replace(run, team=team, state="succeeded")
    instances = [dataclasses.replace(i, state="succeeded") for i in instances]
    service.store.create_run(run, instances, parts)
    return run.id


@pytest.fixture
def world(project: Project) -> Iterator[World]:
    make_project(project)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\nteam = "a"\n')
    store = open_store(project.db)
    service = Service(store, projects.find(project.root), where=project.root)
    for team in ("a", "b"):
        people.add_team(store, "test", team)
    tokens = {}
    for name, (admin, roles) in CAST.items():
        people.add_user(store, "test", name, admin=admin)
        for team, role in roles.items():
            people.grant(store, "test", team, name, role)
        tokens[name] = people.create_token(store, "test", name).secret
    people.add_user(store, "test", "spare")
    run_a = finished_run(service, "a", 1)
    run_b = finished_run(service, "b", 2)
    backfill = service.backfill("daily", "2026-01-01", "2026-01-02").id
    app = create_app(service)
    with in_thread(app) as url:
        yield World(url, store, service, project, tokens, run_a, run_b, backfill)
    store.close()
