"""``conveyor kubernetes manifests``: what a run would send to the cluster, printed, not sent."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from conveyor import params as P
from conveyor.cli.common import DbOpt, ParamOpt
from conveyor.errors import ParameterError
from conveyor.quotas.model import TeamQuota

app = typer.Typer(no_args_is_help=True, help="Kubernetes: the manifests Conveyor creates, without a cluster.")


@app.command()
def manifests(
    target: Annotated[str, typer.Argument(help="path/to/file.py:pipeline or package.module:pipeline")],
    param: ParamOpt = None,
    team: Annotated[
        str | None,
        typer.Option(help="The run's team (its namespace and queue); default: the project's team."),
    ] = None,
    quota: Annotated[
        list[str] | None,
        typer.Option(help="The team's limit as name=amount (cpu=16, memory=64GiB, gpu=2); repeatable."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="yaml or json.")] = "yaml",
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Validate against the official schema first.")
    ] = True,
    db: DbOpt = None,
) -> None:
    """Print the Namespace, ResourceQuota and Kueue LocalQueue of the run's team, then the Secret
    and Job of every task's first attempt, as [executor.kubernetes] makes them (for review or a
    GitOps repository). The quota is --quota's, else the team's in the store (conveyor teams
    quota). The run id and the tokens are placeholders: a real run mints them."""
    from conveyor.executors.choice import choose
    from conveyor.executors.kubernetes import preview as pv
    from conveyor.executors.kubernetes.settings import parse
    from conveyor.project import team_of
    from conveyor.resources import Resources

    if fmt not in ("yaml", "json"):
        raise ParameterError(f"--format {fmt!r} is not one of: yaml, json")
    settings = parse(choose("kubernetes").of("kubernetes"))
    who = team if team is not None else (team_of(target) or "")
    limits = _stored_quota(db, who) if who and not quota else None
    if quota:
        given = Resources.parse(P.parse_assignments(quota), f"--quota of team {who or '(none)'}")
        limits = TeamQuota(who, {k: v for k, v in given.as_dict().items() if k in _named(quota)})
    found = pv.preview(target, P.parse_assignments(param or []), settings, team=who, quota=limits)
    if check:
        pv.check(found)
    if fmt == "json":
        print(json.dumps(found, indent=2))
        return
    import yaml

    print(yaml.safe_dump_all(found, sort_keys=False), end="")


def _named(pairs: list[str]) -> set[str]:
    """The resources the user named (``Resources`` fills the others with defaults)."""
    return {p.partition("=")[0].strip() for p in pairs}


def _stored_quota(db: str | None, team: str) -> TeamQuota | None:
    """The team's quota as the store holds it (``conveyor teams quota``), or None when there is
    no store yet (a new one is not created for this) or it has no such team."""
    from pathlib import Path

    from conveyor.quotas.gate import quotas_from
    from conveyor.store import default_url, open_store

    url = db or default_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    store = open_store(url)
    try:
        return quotas_from(store.team_quota_rows()).get(team)
    finally:
        store.close()
