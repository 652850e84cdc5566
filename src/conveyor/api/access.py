"""Who may ask what: the dependency every route of the API gets (``authorize``).

Auth is on as soon as one user exists in the store; with none, every route answers as before
(and ``conveyor server`` listens on loopback only). Once on, each request is signed in by the
app's authenticators (``conveyor.auth.authn``), its route's rule (``conveyor.auth.roles.RULES``,
by operation id) is looked up, the team it acts on found (the run's, the project's, the one in
the path), and ``decide`` answers:

    no token, or a bad one        401  WWW-Authenticate: Bearer
    a role too weak               403  one line naming the role needed
    another team's run, pipeline,
    backfill or team              404  exactly as if it did not exist

A run addressed by a prefix of its id is looked up among the runs of the caller's teams only,
and the route gets its full id. Changes to runs, pipelines, backfills and schedules that
succeed are written to the audit (people's routes write their own, with their details).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Annotated, cast

from fastapi import Depends, Request

from conveyor.auth.authn import Authenticator, TokenAuthenticator
from conveyor.auth.roles import RULES, Principal, Rule, Verdict, decide
from conveyor.errors import (
    BackfillNotFound,
    Forbidden,
    NotFound,
    PeopleNotFound,
    PipelineNotFound,
    RunNotFound,
    Unauthenticated,
)
from conveyor.service import Service
from conveyor.store import Store

#: What a 401 says to do.
SIGN_IN = (
    "sign in: send a token (Authorization: Bearer cvy_...); set CONVEYOR_TOKEN or run "
    "conveyor login --server URL"
)


class Access:
    """The app's authentication: its authenticators, and whether auth is on."""

    def __init__(
        self, store: Store, authenticators: Sequence[Authenticator] = (), *, public_metrics: bool = False
    ) -> None:
        self.store = store
        self.authenticators = list(authenticators) or [TokenAuthenticator(store)]
        self.public_metrics = public_metrics
        self._on = False
        self._lock = threading.Lock()

    def on(self) -> bool:
        """Is auth on (a user exists)? Once on, it stays on: users are disabled, never deleted."""
        if not self._on:
            on = self.store.count_users() > 0
            with self._lock:
                self._on = self._on or on
        return self._on

    def authenticate(self, request: Request) -> Principal | None:
        for authenticator in self.authenticators:
            who = authenticator.authenticate(request)
            if who is not None:
                return who
        return None


def access_of(request: Request) -> Access:
    return cast(Access, request.app.state.access)


def caller(request: Request) -> Principal | None:
    """The signed-in principal (``authorize`` found it); None when auth is off."""
    return cast(Principal | None, getattr(request.state, "principal", None))


#: A route's parameter: who asks (None: auth is off, nobody signs in).
Who = Annotated[Principal | None, Depends(caller)]


def visible_teams(who: Principal | None) -> list[str] | None:
    """The teams whose runs ``who`` sees; None: every run (an admin, or auth off)."""
    return None if who is None else who.visible_teams()


def user_of(who: Principal | None) -> str | None:
    return None if who is None else who.user


def authorize(request: Request) -> Iterator[None]:
    """Sign the request in and check its route's rule; audit a change that succeeded."""
    route = request.scope.get("route")
    name = getattr(route, "name", "")
    rule = RULES.get(name)
    if rule is None:  # a test fails first: every route has a rule
        raise Forbidden(f"route {name!r} has no rule in conveyor.auth.roles.RULES")
    access = access_of(request)
    svc = cast(Service, request.app.state.service)
    if rule.need == "public":  # /healthz answers while the store does not
        request.state.principal = None
        yield
        return
    if not access.on():
        request.state.principal = None
        yield
        if rule.audit:
            _audit(svc.store, "anonymous", name, None, request)
        return
    who = access.authenticate(request)
    request.state.principal = who
    if who is None and not (rule.need == "metrics" and access.public_metrics):
        raise Unauthenticated(SIGN_IN)
    team = _team(rule, who, svc, request)
    verdict, why = decide(rule, who, team, public_metrics=access.public_metrics)
    if verdict is Verdict.SIGN_IN:
        raise Unauthenticated(SIGN_IN)
    if verdict is Verdict.HIDDEN:
        raise _not_found(rule, request)
    if verdict is Verdict.FORBIDDEN:
        raise Forbidden(why)
    yield
    if rule.audit and who is not None:
        _audit(svc.store, who.user, name, team, request)


def _team(rule: Rule, who: Principal | None, svc: Service, request: Request) -> str | None:
    """The team the request acts on; a run outside the caller's teams is not found."""
    params = request.path_params
    if rule.on == "project":
        return svc.project.team if svc.project is not None else None
    if rule.on == "team":
        return str(params.get("team", ""))
    if rule.on == "run":
        run_id = str(params.get("run_id", ""))
        from conveyor.api.routes import storable

        if not storable(run_id):
            raise RunNotFound(f"no run {run_id!r}")
        run = svc.store.get_run(run_id, teams=visible_teams(who))
        params["run_id"] = run.id  # the route acts on this run, not on another team's of the prefix
        return run.team
    return None


def _not_found(rule: Rule, request: Request) -> NotFound:
    params = request.path_params
    if "backfill_id" in params:
        return BackfillNotFound(f"no backfill {params['backfill_id']!r}")
    if "team" in params:
        return PeopleNotFound(f"no team {params['team']!r}; see: conveyor teams list")
    if "name" in params:
        return PipelineNotFound(f"no pipeline {params['name']!r}")
    return NotFound(f"{request.url.path}: not found")


def _audit(store: Store, actor: str, action: str, team: str | None, request: Request) -> None:
    target = " ".join(str(v) for v in request.path_params.values()) or request.url.path
    store.record_audit(actor, action, team=team, target=target, now=time.time())


__all__ = ["Access", "Who", "authorize", "caller", "user_of", "visible_teams"]
