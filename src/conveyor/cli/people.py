"""``conveyor users``, ``tokens``, ``teams``, ``audit`` and ``login``: people on the store itself
(``--db``; audited as ``local:<os user>``), or through a server (``--server``, with the caller's
token; the server checks their role)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from conveyor.cli.common import DbOpt, JsonOpt, ServerOpt, console, print_table, when
from conveyor.errors import ParameterError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from conveyor.client.people import Directory

users_app = typer.Typer(
    help="Users who may sign in to a server (auth is on once one exists).", no_args_is_help=True
)
tokens_app = typer.Typer(help="API tokens: shown once when created, kept hashed.", no_args_is_help=True)
teams_app = typer.Typer(help="Teams: their members and roles, their weight and quota.", no_args_is_help=True)

RoleOpt = Annotated[
    str, typer.Option("--role", help="lead (configures), member (submits) or viewer (reads).")
]


def _directory(server: str | None, db: str | None) -> Directory:
    if server:
        from conveyor.client.http import Http
        from conveyor.client.people import RemoteDirectory

        return RemoteDirectory(Http(server))
    from conveyor.client.people import LocalDirectory
    from conveyor.store import default_url, open_store

    return LocalDirectory(open_store(db or default_url()))


def _json(items: Sequence[BaseModel] | BaseModel) -> None:
    if isinstance(items, Sequence):
        data: Any = [i.model_dump(mode="json") for i in items]
    else:
        data = items.model_dump(mode="json")
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


# -- users ----------------------------------------------------------------------------------------
@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user's name.")],
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin: manages users, teams and quotas.")
    ] = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Add a user; the first one turns sign-in on for the server's store."""
    user = _directory(server, db).add_user(name, admin)
    console.print(
        f"added user {escape(user.name)}{' (admin)' if user.admin else ''}; create their token with "
        f"conveyor tokens create {escape(user.name)}"
    )


@users_app.command("list")
def users_list(as_json: JsonOpt = False, db: DbOpt = None, server: ServerOpt = None) -> None:
    """List the users."""
    users = _directory(server, db).users()
    if as_json:
        return _json(users)
    table = Table("name", "admin", "created", "disabled")
    for u in users:
        table.add_row(escape(u.name), "yes" if u.admin else "", when(u.created_at), when(u.disabled_at))
    print_table(table)


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="The user's name.")], db: DbOpt = None, server: ServerOpt = None
) -> None:
    """Disable a user: their tokens stop working at once."""
    _directory(server, db).disable_user(name)
    console.print(f"disabled user {escape(name)}: their tokens no longer work")


# -- tokens ---------------------------------------------------------------------------------------
@tokens_app.command("create")
def tokens_create(
    user: Annotated[str, typer.Argument(help="Whose token.")],
    label: Annotated[str, typer.Option("--label", help="What it is for (shown in tokens list).")] = "",
    expires: Annotated[
        str | None, typer.Option("--expires", help="Its life: 30d, 12h, 90m, 2w (default: none).")
    ] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Create a token for a user and print it, once: it is not kept, only its hash."""
    new = _directory(server, db).create_token(user, label, expires)
    if as_json:
        return _json(new)
    sys.stdout.write(new.token + "\n")
    typer.echo(
        f"token {new.id} for {new.user}: keep it now, it will not be shown again "
        "(use it as CONVEYOR_TOKEN, or with conveyor login --server URL)",
        err=True,
    )


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """List tokens (never their secrets)."""
    found = _directory(server, db).tokens(user)
    if as_json:
        return _json(found)
    table = Table("id", "user", "label", "created", "expires", "last used", "revoked")
    for t in found:
        table.add_row(
            t.id,
            escape(t.user),
            escape(t.label),
            when(t.created_at),
            when(t.expires_at),
            when(t.last_used_at),
            when(t.revoked_at),
        )
    print_table(table)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's id (tokens list).")],
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Revoke a token: it stops working at once."""
    t = _directory(server, db).revoke_token(token_id)
    console.print(f"revoked token {t.id} of {escape(t.user)}")


# -- teams ----------------------------------------------------------------------------------------
@teams_app.command("add")
def teams_add(
    name: Annotated[str, typer.Argument(help="The team's name (a project's conveyor.toml names it).")],
    weight: Annotated[float, typer.Option("--weight", help="Its share against other teams.")] = 1.0,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Add a team."""
    team = _directory(server, db).add_team(name, weight)
    console.print(f"added team {escape(team.name)} (weight {team.weight:g})")


@teams_app.command("list")
def teams_list(as_json: JsonOpt = False, db: DbOpt = None, server: ServerOpt = None) -> None:
    """List the teams, their weights and quotas."""
    teams = _directory(server, db).teams()
    if as_json:
        return _json(teams)
    table = Table("name", "weight", "quota", "created")
    for t in teams:
        table.add_row(
            escape(t.name), f"{t.weight:g}", escape(json.dumps(t.quota, sort_keys=True)), when(t.created_at)
        )
    print_table(table)


@teams_app.command("members")
def teams_members(
    team: Annotated[str, typer.Argument(help="The team.")],
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """List a team's members and their roles."""
    _print_members(_directory(server, db).members(team), as_json)


@teams_app.command("grant")
def teams_grant(
    team: Annotated[str, typer.Argument(help="The team.")],
    user: Annotated[str, typer.Argument(help="The user.")],
    role: RoleOpt,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Give a user a role in a team (replacing the one they had)."""
    if role not in ("lead", "member", "viewer"):
        raise ParameterError(f"--role {role!r} must be lead, member or viewer", {"role": "not a role"})
    _directory(server, db).grant(team, user, role)
    console.print(f"{escape(user)} is {role} of team {escape(team)}")


@teams_app.command("revoke")
def teams_revoke(
    team: Annotated[str, typer.Argument(help="The team.")],
    user: Annotated[str, typer.Argument(help="The user.")],
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Take a user's role in a team away."""
    _directory(server, db).revoke(team, user)
    console.print(f"{escape(user)} is no longer in team {escape(team)}")


@teams_app.command("quota")
def teams_quota(
    team: Annotated[str, typer.Argument(help="The team.")],
    cpu: Annotated[float | None, typer.Option("--cpu", help="CPUs its running tasks may hold.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="Memory: 32GiB, 512MiB, bytes.")] = None,
    gpu: Annotated[float | None, typer.Option("--gpu", help="GPUs.")] = None,
    resource: Annotated[
        list[str] | None, typer.Option("--resource", help="Any other resource as name=amount; repeatable.")
    ] = None,
    runs: Annotated[int | None, typer.Option("--runs", min=0, help="Runs going at once.")] = None,
    borrow: Annotated[
        list[str] | None,
        typer.Option("--borrow", help="What it may borrow beyond its limits, as name=amount; repeatable."),
    ] = None,
    weight: Annotated[float | None, typer.Option("--weight", help="Its share against other teams.")] = None,
    preempt_after: Annotated[
        float | None,
        typer.Option(
            "--preempt-after",
            min=0,
            help="Team '*' (the cluster) only: stop attempts running on borrowed quota once a lender's "
            "work has waited this many seconds (default: never).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Set a team's quota (replacing it) and weight; team '*' is the cluster's capacity."""
    from conveyor.auth.people import quota_of
    from conveyor.resources import parse_memory

    limits: dict[str, float] = {}
    if cpu is not None:
        limits["cpu"] = cpu
    if memory is not None:
        limits["memory"] = parse_memory(memory, "--memory")
    if gpu is not None:
        limits["gpu"] = gpu
    limits.update(_amounts(resource, "--resource"))
    if preempt_after is not None and team != "*":
        raise ParameterError(
            f"--preempt-after is the cluster's setting: give it to team '*', not {team!r}",
            {"preempt_after": "team '*' only"},
        )
    quota = quota_of(
        limits=limits, runs=runs, borrow=_amounts(borrow, "--borrow"), preempt_after=preempt_after
    )
    updated = _directory(server, db).set_quota(team, quota, weight)
    if as_json:
        return _json(updated)
    console.print(
        f"team {escape(updated.name)}: weight {updated.weight:g}, quota "
        f"{escape(json.dumps(updated.quota, sort_keys=True))}"
    )


def _amounts(items: list[str] | None, option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            amount = float(value)
        except ValueError:
            amount = -1.0
        if not sep or not name.strip() or amount < 0:
            raise ParameterError(
                f"{option} {item!r} must be name=amount, like cpu=4", {option: "not name=amount"}
            )
        out[name.strip()] = amount
    return out


def _print_members(members: Sequence[BaseModel], as_json: bool) -> None:
    if as_json:
        return _json(members)
    table = Table("user", "role")
    for m in members:
        d = m.model_dump()
        table.add_row(escape(d["user"]), d["role"])
    print_table(table)


# -- the audit and signing in ---------------------------------------------------------------------
def audit(
    team: Annotated[str | None, typer.Option("--team", help="Only this team's rows.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many, newest first.")] = 200,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """What was done, by whom: people, teams, quotas, and actions on runs."""
    rows = _directory(server, db).audit(team, limit)
    if as_json:
        return _json(rows)
    table = Table("at", "actor", "action", "team", "target", "detail")
    for a in rows:
        table.add_row(
            when(a.at), escape(a.actor), a.action, escape(a.team or ""), escape(a.target), escape(a.detail)
        )
    print_table(table)


def login(
    server: Annotated[
        str, typer.Option("--server", envvar="CONVEYOR_SERVER", metavar="URL", help="The server.")
    ],
) -> None:
    """Keep a token for a server (read from a prompt, or stdin) in ~/.config/conveyor/credentials.toml."""
    from conveyor.client import credentials
    from conveyor.client.http import Http

    if sys.stdin.isatty():
        token = typer.prompt("token (conveyor tokens create)", hide_input=True)
    else:
        token = sys.stdin.readline()
    token = token.strip()
    if not token:
        raise ParameterError(
            "no token given; create one with conveyor tokens create USER", {"token": "empty"}
        )
    http = Http(server, token=token)
    try:
        me = http._parse(_me(), http._call("GET", "/api/v1/me"))
    finally:
        http.close()
    where = credentials.save(server, token)
    console.print(f"signed in to {escape(server)} as {escape(me.user or '?')}; the token is kept in {where}")


def _me() -> Any:
    from pydantic import TypeAdapter

    from conveyor.auth.views import Me

    return TypeAdapter(Me)
