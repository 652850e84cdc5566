"""Who may do what: roles, the signed-in principal, and one rule per API route. Pure: no
store, no HTTP; ``decide`` is the whole decision, and tests/auth/test_roles.py holds it.

    viewer  < member < lead        (a role is held in one team)
    admin                          (over every team: users, teams, quotas)

- a **viewer** reads what belongs to the team: pipelines, runs, logs, results, graphs,
  backfills, schedules, its members and quota, its audit;
- a **member** acts: triggers runs, starts and cancels backfills, cancels and retries runs;
- a **lead** configures: reloads the pipelines, pauses and resumes schedules, grants and revokes
  roles in the team;
- an **admin** manages users, teams and quotas, and may do everything a lead may in any team.

A resource of a team in which the caller holds no role is answered as if it did not exist
(``HIDDEN``: a 404), so that ids and names of other teams leak nothing; a role too weak for what
was asked is ``FORBIDDEN`` (403) with one line naming the role needed.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


class Role(enum.IntEnum):
    """A role in a team, ordered: each may do what the weaker ones may."""

    VIEWER = 1
    MEMBER = 2
    LEAD = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"role {name!r} must be one of lead, member, viewer") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user: whether they are an admin, and their role in each of their teams."""

    user: str
    admin: bool = False
    roles: Mapping[str, Role] = field(default_factory=dict)

    def role_in(self, team: str | None) -> Role | None:
        return None if team is None else self.roles.get(team)

    def sees(self, team: str | None) -> bool:
        """May they see what belongs to ``team``? (Without a team: admins only.)"""
        return self.admin or self.role_in(team) is not None

    def visible_teams(self) -> list[str] | None:
        """The teams whose runs they see; None: every run (an admin)."""
        return None if self.admin else sorted(self.roles)


#: What a route needs besides a role in a team.
Need = Role | Literal["public", "signed_in", "admin", "metrics"]

#: Where the team a route acts on comes from: a run (``run_id`` in the path), the project the
#: server serves (its pipelines, backfills, schedules), a ``team`` in the path, or none.
On = Literal["run", "project", "team", "none"]


@dataclass(frozen=True, slots=True)
class Rule:
    need: Need
    on: On = "none"
    hide: bool = False  # addressed by name or id in the path: another team's is 404, not 403
    audit: bool = False  # a change to runs or the project: ``access`` audits each success


def _read(on: On, hide: bool = True) -> Rule:
    return Rule(Role.VIEWER, on, hide)


def _act(need: Role, on: On, hide: bool = True) -> Rule:
    return Rule(need, on, hide, audit=True)


#: Every route of the API by its operation id (the route function's name), and what it needs. A
#: test fails when a route has no rule here.
RULES: dict[str, Rule] = {
    # the service
    "healthz": Rule("public"),
    "prometheus": Rule("metrics"),  # public with conveyor server --public-metrics
    # pipelines
    "list_pipelines": _read("project", hide=False),
    "get_pipeline": _read("project"),
    "reload_pipelines": _act(Role.LEAD, "project", hide=False),
    "trigger": _act(Role.MEMBER, "project"),
    # runs: lists are filtered to the caller's teams
    "list_runs": Rule("signed_in"),
    "get_run": _read("run"),
    "cancel_run": _act(Role.MEMBER, "run"),
    "retry_run": _act(Role.MEMBER, "run"),
    "logs": _read("run"),
    "result": _read("run"),
    "notebook": _read("run"),
    "get_graph": _read("run"),
    "get_changes": _read("run"),
    "list_attempts": _read("run"),
    # backfills and schedules: the project's
    "list_backfills": _read("project", hide=False),
    "create_backfill": _act(Role.MEMBER, "project", hide=False),
    "get_backfill": _read("project"),
    "cancel_backfill": _act(Role.MEMBER, "project"),
    "list_schedules": _read("project", hide=False),
    "pause_schedule": _act(Role.LEAD, "project"),
    "resume_schedule": _act(Role.LEAD, "project"),
    "list_schedulers": Rule("signed_in"),
    # people: sessions, users, tokens, teams, members, quotas, the audit (``auth.people`` audits
    # their changes itself, with what changed)
    "start_session": Rule("public"),
    "end_session": Rule("signed_in"),
    "whoami": Rule("signed_in"),
    "list_users": Rule("admin"),
    "add_user": Rule("admin"),
    "disable_user": Rule("admin"),
    "list_tokens": Rule("signed_in"),  # their own; an admin's: everyone's
    "create_token": Rule("signed_in"),  # for themselves; an admin: for anyone
    "revoke_token": Rule("signed_in"),  # their own; an admin: anyone's
    "list_teams": Rule("signed_in"),  # their teams; an admin's: every team
    "add_team": Rule("admin"),
    "list_members": _read("team"),
    "grant_role": Rule(Role.LEAD, "team", hide=True),
    "revoke_role": Rule(Role.LEAD, "team", hide=True),
    "get_quota": _read("team"),
    "set_quota": Rule("admin", "team", hide=True),
    "set_user_weights": Rule(Role.LEAD, "team", hide=True),
    "list_audit": Rule("signed_in"),  # the rows of their teams, and their own
    # the project's git remote (conveyor.git, outside the schema): clone and pull, push
    "git_fetch": _read("project", hide=False),
    "git_push": Rule(Role.MEMBER, "project", hide=False),  # audited by conveyor.git itself
}

#: The rules of routes outside the OpenAPI schema (the git remote answers them itself).
OUTSIDE_SCHEMA = frozenset({"git_fetch", "git_push"})


class Verdict(enum.Enum):
    ALLOW = "allow"
    SIGN_IN = "sign in"  # no principal: 401
    FORBIDDEN = "forbidden"  # too weak a role: 403
    HIDDEN = "hidden"  # another team's resource: 404, as if it did not exist


def decide(
    rule: Rule, who: Principal | None, team: str | None, *, public_metrics: bool = False
) -> tuple[Verdict, str]:
    """May ``who`` do what ``rule`` guards, on something of ``team``? The verdict, and for a
    refusal the one line to answer (for HIDDEN, the caller says "not found" its own way)."""
    if rule.need == "public" or (rule.need == "metrics" and public_metrics):
        return Verdict.ALLOW, ""
    if who is None:
        return Verdict.SIGN_IN, "sign in: send a token (Authorization: Bearer ...)"
    if who.admin or rule.need in ("signed_in", "metrics"):
        return Verdict.ALLOW, ""
    have = who.role_in(team)
    if rule.need == "admin":
        if rule.hide and have is None:
            return Verdict.HIDDEN, ""
        return Verdict.FORBIDDEN, "this needs an admin"
    assert isinstance(rule.need, Role)
    if have is None:
        if rule.hide:
            return Verdict.HIDDEN, ""
        where = f"team {team}" if team else "the team of this project (it has none: admins only)"
        return Verdict.FORBIDDEN, f"this needs the role {rule.need.label} in {where}"
    if have < rule.need:
        return (
            Verdict.FORBIDDEN,
            f"this needs the role {rule.need.label} in team {team}; you are {have.label}",
        )
    return Verdict.ALLOW, ""


__all__ = ["OUTSIDE_SCHEMA", "RULES", "Principal", "Role", "Rule", "Verdict", "decide"]
