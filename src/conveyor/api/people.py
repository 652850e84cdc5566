"""The routes of people: the web UI's session, users, tokens, teams, members, quotas, the audit.

Each is a thin call of ``conveyor.auth.people`` (which writes the audit) behind the rule of its
operation id (``conveyor.auth.roles.RULES``, checked by ``access.authorize``); what a caller may
list beyond their rule (their own tokens, their teams, their teams' audit) is filtered here.
"""

from __future__ import annotations

import time
from typing import Annotated, cast

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response

from conveyor.api.access import Who, access_of, authorize
from conveyor.api.problems import responses
from conveyor.auth import people, tokens
from conveyor.auth.authn import SESSION_COOKIE
from conveyor.auth.roles import Principal
from conveyor.auth.views import (
    AuditView,
    GrantRequest,
    Me,
    MemberView,
    NewToken,
    QuotaRequest,
    SessionRequest,
    TeamRequest,
    TeamView,
    TokenRequest,
    TokenView,
    UserRequest,
    UserView,
    WeightsRequest,
)
from conveyor.errors import Forbidden, PeopleNotFound, Unauthenticated
from conveyor.service import Service
from conveyor.store import Store

router = APIRouter(prefix="/api/v1", dependencies=[Depends(authorize)], responses=responses(401, 403))

TeamName = Annotated[str, Path(description="The team's name", max_length=100)]
UserName = Annotated[str, Path(description="The user's name", max_length=100)]


def _store(request: Request) -> Store:
    return cast(Service, request.app.state.service).store


St = Annotated[Store, Depends(_store)]


def _actor(who: Principal | None) -> str:
    return "anonymous" if who is None else who.user


# -- the web UI's session -------------------------------------------------------------------------
@router.post(
    "/session",
    tags=["people"],
    summary="Sign in the web UI: trade an API token for a session cookie (12 hours)",
    response_model=Me,
    responses=responses(400, 413, 422),
)
def start_session(
    store: St, request: Request, response: Response, body: Annotated[SessionRequest, Body()]
) -> Me:
    found = tokens.verify(store, body.token.strip(), now=time.time())
    if found is None:
        raise Unauthenticated(
            "that token is unknown, expired or revoked; create one with conveyor tokens create"
        )
    who, _ = found
    store.drop_sessions(time.time())  # the ended ones: a signed-in browser's cookie is one row
    issued = tokens.create(
        store, who.user, now=time.time(), label="web UI", kind="session", expires_in=tokens.SESSION_TTL
    )
    response.set_cookie(
        SESSION_COOKIE,
        issued.secret,
        max_age=int(tokens.SESSION_TTL),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return Me.of(who)


@router.post(
    "/session/end",
    tags=["people"],
    summary="Sign out of the web UI: the session ends and its cookie is cleared",
    status_code=204,
    response_class=Response,
    responses=responses(413),
)
def end_session(store: St, request: Request) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        found = store.token_by_hash(tokens.digest(secret))
        if found is not None and found[0].kind == "session":
            store.revoke_token(found[0].id, time.time())
    answer = Response(status_code=204)
    answer.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return answer


@router.get(
    "/me",
    tags=["people"],
    summary="Who is signed in, and their role in each of their teams",
    response_model=Me,
)
def whoami(request: Request, who: Who) -> Me:
    return Me.of(who, auth=access_of(request).on())


# -- users ----------------------------------------------------------------------------------------
@router.get("/users", tags=["people"], summary="List the users (admins)", response_model=list[UserView])
def list_users(store: St) -> list[UserView]:
    return [UserView.of(u) for u in store.list_users()]


@router.post(
    "/users",
    tags=["people"],
    summary="Add a user (admins)",
    status_code=201,
    response_model=UserView,
    responses=responses(400, 409, 413, 422),
)
def add_user(store: St, who: Who, body: UserRequest) -> UserView:
    return UserView.of(people.add_user(store, _actor(who), body.name, admin=body.admin))


@router.post(
    "/users/{user}/disable",
    tags=["people"],
    summary="Disable a user: their tokens stop working (admins)",
    response_model=UserView,
    responses=responses(404, 413, 422),
)
def disable_user(store: St, who: Who, user: UserName) -> UserView:
    return UserView.of(people.disable_user(store, _actor(who), user))


# -- tokens ---------------------------------------------------------------------------------------
@router.get(
    "/tokens",
    tags=["people"],
    summary="List tokens, never their secrets: the caller's own (an admin's: anyone's)",
    response_model=list[TokenView],
    responses=responses(422),
)
def list_tokens(
    store: St,
    who: Who,
    user: Annotated[str | None, Query(max_length=100, description="Only this user's (admins)")] = None,
) -> list[TokenView]:
    if who is not None and not who.admin:
        user = who.user
    return [TokenView.of(t) for t in store.list_tokens(user) if t.kind == "api"]


@router.post(
    "/tokens",
    tags=["people"],
    summary="Create a token: its secret is in this answer only",
    status_code=201,
    response_model=NewToken,
    responses=responses(400, 404, 413, 422),
)
def create_token(store: St, who: Who, body: TokenRequest) -> NewToken:
    user = body.user or (who.user if who is not None else None)
    if user is None:
        raise PeopleNotFound("name the token's user")
    if who is not None and not who.admin and user != who.user:
        raise Forbidden("this needs an admin: a token for another user")
    issued = people.create_token(store, _actor(who), user, label=body.label, expires=body.expires)
    return NewToken(**TokenView.of(issued.record).model_dump(), token=issued.secret)


@router.post(
    "/tokens/{token_id}/revoke",
    tags=["people"],
    summary="Revoke a token: the caller's own (an admin: anyone's)",
    response_model=TokenView,
    responses=responses(404, 413, 422),
)
def revoke_token(
    store: St, who: Who, token_id: Annotated[str, Path(max_length=32, description="The token's id")]
) -> TokenView:
    found = store.get_token(token_id)
    if found is None or (who is not None and not who.admin and found.user != who.user):
        raise PeopleNotFound(f"no token {token_id!r}; see: conveyor tokens list")
    return TokenView.of(people.revoke_token(store, _actor(who), token_id))


# -- teams, members, quotas -----------------------------------------------------------------------
@router.get(
    "/teams",
    tags=["people"],
    summary="List teams: the caller's (an admin's: every team)",
    response_model=list[TeamView],
)
def list_teams(store: St, who: Who) -> list[TeamView]:
    return [TeamView.of(t) for t in store.list_teams() if who is None or who.sees(t.name)]


@router.post(
    "/teams",
    tags=["people"],
    summary="Add a team (admins)",
    status_code=201,
    response_model=TeamView,
    responses=responses(400, 409, 413, 422),
)
def add_team(store: St, who: Who, body: TeamRequest) -> TeamView:
    return TeamView.of(people.add_team(store, _actor(who), body.name, weight=body.weight))


@router.get(
    "/teams/{team}/members",
    tags=["people"],
    summary="List a team's members and their roles",
    response_model=list[MemberView],
    responses=responses(404, 422),
)
def list_members(store: St, team: TeamName) -> list[MemberView]:
    people.team(store, team)
    return [MemberView(user=u, role=r) for u, r in store.members(team)]  # type: ignore[arg-type]


@router.post(
    "/teams/{team}/members",
    tags=["people"],
    summary="Give a user a role in the team (its leads; admins)",
    response_model=list[MemberView],
    responses=responses(400, 404, 413, 422),
)
def grant_role(store: St, who: Who, team: TeamName, body: GrantRequest) -> list[MemberView]:
    people.grant(store, _actor(who), team, body.user, body.role)
    return [MemberView(user=u, role=r) for u, r in store.members(team)]  # type: ignore[arg-type]


@router.delete(
    "/teams/{team}/members/{user}",
    tags=["people"],
    summary="Take a user's role in the team away (its leads; admins)",
    response_model=list[MemberView],
    responses=responses(404, 422),
)
def revoke_role(store: St, who: Who, team: TeamName, user: UserName) -> list[MemberView]:
    people.revoke(store, _actor(who), team, user)
    return [MemberView(user=u, role=r) for u, r in store.members(team)]  # type: ignore[arg-type]


@router.get(
    "/teams/{team}/quota",
    tags=["people"],
    summary="Show a team's weight and quota",
    response_model=TeamView,
    responses=responses(404, 422),
)
def get_quota(store: St, team: TeamName) -> TeamView:
    return TeamView.of(people.team(store, team))


@router.put(
    "/teams/{team}/quota",
    tags=["people"],
    summary="Set a team's quota and weight (admins)",
    response_model=TeamView,
    responses=responses(400, 404, 413, 422),
)
def set_quota(store: St, who: Who, team: TeamName, body: QuotaRequest) -> TeamView:
    quota = people.quota_of(limits=body.limits, runs=body.runs, borrow=body.borrow)
    if body.users:
        quota["users"] = body.users
    return TeamView.of(people.set_quota(store, _actor(who), team, quota, weight=body.weight))


@router.put(
    "/teams/{team}/weights",
    tags=["people"],
    summary="Set the members' weights inside the team (its leads; admins)",
    response_model=TeamView,
    responses=responses(400, 404, 413, 422),
)
def set_user_weights(store: St, who: Who, team: TeamName, body: WeightsRequest) -> TeamView:
    return TeamView.of(people.set_user_weights(store, _actor(who), team, body.users))


# -- the audit ------------------------------------------------------------------------------------
@router.get(
    "/audit",
    tags=["people"],
    summary="What was done, newest first: of the caller's teams and by the caller (an admin: all)",
    response_model=list[AuditView],
    responses=responses(422),
)
def list_audit(
    store: St,
    who: Who,
    team: Annotated[str | None, Query(max_length=100, description="Only this team's")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="How many")] = 200,
) -> list[AuditView]:
    teams = None if who is None or who.admin else sorted(who.roles)
    if team is not None:
        teams = [team] if teams is None or team in teams else []
    actor = None if who is None or who.admin or team is not None else who.user
    rows = store.audit_log(teams=teams, actor=actor, limit=limit)
    return [AuditView.of(a) for a in rows]


__all__ = ["router"]
