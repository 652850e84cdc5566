"""People managed on the local store or through a server's API, the same calls either way:
what ``conveyor users|tokens|teams|audit`` act on. Locally, changes are audited as
``local:<os user>`` (whoever can open the store); through a server, as the token's user."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import TypeAdapter

from conveyor.auth import people
from conveyor.auth.views import AuditView, MemberView, NewToken, TeamView, TokenView, UserView
from conveyor.client.http import Http, _q
from conveyor.store import Store


class Directory(Protocol):
    def users(self) -> list[UserView]: ...
    def add_user(self, name: str, admin: bool) -> UserView: ...
    def disable_user(self, name: str) -> UserView: ...
    def tokens(self, user: str | None) -> list[TokenView]: ...
    def create_token(self, user: str, label: str, expires: str | None) -> NewToken: ...
    def revoke_token(self, token_id: str) -> TokenView: ...
    def teams(self) -> list[TeamView]: ...
    def add_team(self, name: str, weight: float) -> TeamView: ...
    def members(self, team: str) -> list[MemberView]: ...
    def grant(self, team: str, user: str, role: str) -> list[MemberView]: ...
    def revoke(self, team: str, user: str) -> list[MemberView]: ...
    def set_quota(self, team: str, quota: Mapping[str, Any], weight: float | None) -> TeamView: ...
    def audit(self, team: str | None, limit: int) -> list[AuditView]: ...


class LocalDirectory:
    """On the store itself: nothing is checked (opening the store is the permission)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.actor = people.local_actor()

    def users(self) -> list[UserView]:
        return [UserView.of(u) for u in self.store.list_users()]

    def add_user(self, name: str, admin: bool) -> UserView:
        return UserView.of(people.add_user(self.store, self.actor, name, admin=admin))

    def disable_user(self, name: str) -> UserView:
        return UserView.of(people.disable_user(self.store, self.actor, name))

    def tokens(self, user: str | None) -> list[TokenView]:
        return [TokenView.of(t) for t in self.store.list_tokens(user) if t.kind == "api"]

    def create_token(self, user: str, label: str, expires: str | None) -> NewToken:
        issued = people.create_token(self.store, self.actor, user, label=label, expires=expires)
        return NewToken(**TokenView.of(issued.record).model_dump(), token=issued.secret)

    def revoke_token(self, token_id: str) -> TokenView:
        return TokenView.of(people.revoke_token(self.store, self.actor, token_id))

    def teams(self) -> list[TeamView]:
        return [TeamView.of(t) for t in self.store.list_teams()]

    def add_team(self, name: str, weight: float) -> TeamView:
        return TeamView.of(people.add_team(self.store, self.actor, name, weight=weight))

    def members(self, team: str) -> list[MemberView]:
        people.team(self.store, team)
        return [MemberView(user=u, role=r) for u, r in self.store.members(team)]  # type: ignore[arg-type]

    def grant(self, team: str, user: str, role: str) -> list[MemberView]:
        people.grant(self.store, self.actor, team, user, role)
        return self.members(team)

    def revoke(self, team: str, user: str) -> list[MemberView]:
        people.revoke(self.store, self.actor, team, user)
        return self.members(team)

    def set_quota(self, team: str, quota: Mapping[str, Any], weight: float | None) -> TeamView:
        return TeamView.of(people.set_quota(self.store, self.actor, team, quota, weight=weight))

    def audit(self, team: str | None, limit: int) -> list[AuditView]:
        rows = self.store.audit_log(teams=None if team is None else [team], limit=limit)
        return [AuditView.of(a) for a in rows]


_USERS = TypeAdapter(list[UserView])
_USER = TypeAdapter(UserView)
_TOKENS = TypeAdapter(list[TokenView])
_TOKEN = TypeAdapter(TokenView)
_NEW = TypeAdapter(NewToken)
_TEAMS = TypeAdapter(list[TeamView])
_TEAM = TypeAdapter(TeamView)
_MEMBERS = TypeAdapter(list[MemberView])
_AUDIT = TypeAdapter(list[AuditView])


class RemoteDirectory:
    """Through a server's API, as the user of the token ``Http`` sends."""

    def __init__(self, http: Http) -> None:
        self.http = http

    def users(self) -> list[UserView]:
        return self.http._get(_USERS, "/users")

    def add_user(self, name: str, admin: bool) -> UserView:
        return self.http._post(_USER, "/users", {"name": name, "admin": admin})

    def disable_user(self, name: str) -> UserView:
        return self.http._post(_USER, f"/users/{_q(name)}/disable")

    def tokens(self, user: str | None) -> list[TokenView]:
        return self.http._get(_TOKENS, "/tokens", {"user": user})

    def create_token(self, user: str, label: str, expires: str | None) -> NewToken:
        return self.http._post(_NEW, "/tokens", {"user": user, "label": label, "expires": expires})

    def revoke_token(self, token_id: str) -> TokenView:
        return self.http._post(_TOKEN, f"/tokens/{_q(token_id)}/revoke")

    def teams(self) -> list[TeamView]:
        return self.http._get(_TEAMS, "/teams")

    def add_team(self, name: str, weight: float) -> TeamView:
        return self.http._post(_TEAM, "/teams", {"name": name, "weight": weight})

    def members(self, team: str) -> list[MemberView]:
        return self.http._get(_MEMBERS, f"/teams/{_q(team)}/members")

    def grant(self, team: str, user: str, role: str) -> list[MemberView]:
        return self.http._post(_MEMBERS, f"/teams/{_q(team)}/members", {"user": user, "role": role})

    def revoke(self, team: str, user: str) -> list[MemberView]:
        path = f"/api/v1/teams/{_q(team)}/members/{_q(user)}"
        return self.http._parse(_MEMBERS, self.http._call("DELETE", path))

    def set_quota(self, team: str, quota: Mapping[str, Any], weight: float | None) -> TeamView:
        body = {**quota, "weight": weight}
        return self.http._parse(_TEAM, self.http._call("PUT", f"/api/v1/teams/{_q(team)}/quota", json=body))

    def audit(self, team: str | None, limit: int) -> list[AuditView]:
        return self.http._get(_AUDIT, "/audit", {"team": team, "limit": limit})


__all__ = ["Directory", "LocalDirectory", "RemoteDirectory"]
