"""Managing people, each change written to the audit: users, tokens, teams, roles, quotas.
``actor`` is who asks: a user, or ``local:<os user>`` for a command on the store itself (the
API checks the caller's role first, ``conveyor.api.access``; the store's own commands are
trusted as whoever can open the store)."""

from __future__ import annotations

import getpass
import json
import time
from collections.abc import Mapping
from typing import Any

from conveyor.auth import tokens
from conveyor.auth.roles import Role
from conveyor.errors import ParameterError, PeopleNotFound
from conveyor.store import Store
from conveyor.store.records import TeamRecord, TokenRecord, UserRecord


def local_actor() -> str:
    """Who acts on the store directly: ``local:<os user>``."""
    try:
        return f"local:{getpass.getuser()}"
    except (KeyError, OSError):
        return "local:?"


def add_user(store: Store, actor: str, name: str, *, admin: bool = False) -> UserRecord:
    user = store.add_user(name, admin=admin, now=time.time())
    _audit(store, actor, "users.add", name, detail="admin" if admin else "")
    return user


def disable_user(store: Store, actor: str, name: str) -> UserRecord:
    user = store.disable_user(name, time.time())
    _audit(store, actor, "users.disable", name)
    return user


def create_token(
    store: Store, actor: str, user: str, *, label: str = "", expires: str | None = None, kind: str = "api"
) -> tokens.Issued:
    life = None if expires is None else tokens.parse_duration(expires)
    issued = tokens.create(store, user, now=time.time(), label=label, expires_in=life, kind=kind)
    if kind == "api":
        _audit(
            store,
            actor,
            "tokens.create",
            issued.record.id,
            detail=f"for {user}" + (f" ({label})" if label else ""),
        )
    return issued


def revoke_token(store: Store, actor: str, token_id: str) -> TokenRecord:
    rec = store.revoke_token(token_id, time.time())
    if rec.kind == "api":
        _audit(store, actor, "tokens.revoke", token_id, detail=f"of {rec.user}")
    return rec


def add_team(store: Store, actor: str, name: str, *, weight: float = 1.0) -> TeamRecord:
    _positive(weight, "weight")
    team = store.add_team(name, weight=weight, now=time.time())
    _audit(store, actor, "teams.add", name, team=name, detail=f"weight {weight:g}")
    return team


def grant(store: Store, actor: str, team: str, user: str, role: str) -> None:
    Role.parse(role)
    store.grant(team, user, role)
    _audit(store, actor, "teams.grant", user, team=team, detail=role)


def revoke(store: Store, actor: str, team: str, user: str) -> None:
    store.revoke(team, user)
    _audit(store, actor, "teams.revoke", user, team=team)


def team(store: Store, name: str) -> TeamRecord:
    found = store.get_team(name)
    if found is None:
        raise PeopleNotFound(f"no team {name!r}; see: conveyor teams list")
    return found


def set_quota(
    store: Store, actor: str, name: str, quota: Mapping[str, Any], *, weight: float | None = None
) -> TeamRecord:
    """Replace the team's quota (``quota_of``'s shape); ``weight``: change its weight too."""
    if weight is not None:
        _positive(weight, "weight")
    current = team(store, name)
    users = dict(quota.get("users") or current.quota.get("users") or {})
    new = {**{k: v for k, v in quota.items() if v not in (None, {})}, **({"users": users} if users else {})}
    rec = store.set_team(name, weight=weight, quota=new)
    detail = json.dumps(new, sort_keys=True) + ("" if weight is None else f"; weight {weight:g}")
    _audit(store, actor, "teams.quota", name, team=name, detail=detail)
    return rec


def set_user_weights(store: Store, actor: str, name: str, weights: Mapping[str, float]) -> TeamRecord:
    """The members' weights inside the team (a lead's to set)."""
    current = team(store, name)
    members = dict(store.members(name))
    for user, w in weights.items():
        if user not in members:
            raise ParameterError(f"{user!r} is not a member of team {name}", {user: "not a member"})
        _positive(w, user)
    rec = store.set_team(name, quota={**current.quota, "users": dict(weights)})
    _audit(store, actor, "teams.weights", name, team=name, detail=json.dumps(dict(weights), sort_keys=True))
    return rec


def quota_of(
    *,
    limits: Mapping[str, float] | None = None,
    runs: int | None = None,
    borrow: Mapping[str, float] | None = None,
    preempt_after: float | None = None,
) -> dict[str, Any]:
    """The quota's JSON: ``{"limits": {...}, "runs": N, "borrow": {...}}`` (what is given);
    the cluster's (team ``*``) may carry ``preempt_after``, in seconds."""
    out: dict[str, Any] = {}
    for where, values in (("limits", limits), ("borrow", borrow)):
        if values:
            for k, v in values.items():
                if v < 0:
                    raise ParameterError(f"{where} {k}={v:g} must not be negative", {k: "negative"})
            out[where] = {k: int(v) if float(v).is_integer() else v for k, v in values.items()}
    if runs is not None:
        if runs < 0:
            raise ParameterError(f"runs {runs} must not be negative", {"runs": "negative"})
        out["runs"] = runs
    if preempt_after is not None:
        out["preempt_after"] = preempt_after
    return out


def _positive(value: float, name: str) -> None:
    if not value > 0 or value == float("inf"):
        raise ParameterError(f"{name} {value:g} must be a positive number", {name: "not positive"})


def _audit(
    store: Store, actor: str, action: str, target: str, *, team: str | None = None, detail: str = ""
) -> None:
    store.record_audit(actor, action, team=team, target=target, detail=detail, now=time.time())
