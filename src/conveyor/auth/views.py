"""What the API, the client and the CLI's ``--json`` show of people: users, tokens (never their
secret), teams, members, the audit."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from conveyor.auth.roles import Principal
from conveyor.store.records import AuditRecord, TeamRecord, TokenRecord, UserRecord

RoleName = Literal["lead", "member", "viewer"]


def stamp(t: float | None) -> dt.datetime | None:
    """A time as the API shows it: ISO 8601 in UTC (as ``conveyor.views``)."""
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC)


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class UserView(View):
    name: str
    admin: bool
    created_at: dt.datetime
    disabled_at: dt.datetime | None = None

    @classmethod
    def of(cls, u: UserRecord) -> UserView:
        created = stamp(u.created_at)
        assert created is not None
        return cls(name=u.name, admin=u.admin, created_at=created, disabled_at=stamp(u.disabled_at))


class TokenView(View):
    id: str = Field(description="The token's public id: how it is listed and revoked")
    user: str
    label: str
    kind: Literal["api", "session"]
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None

    @classmethod
    def of(cls, t: TokenRecord) -> TokenView:
        created = stamp(t.created_at)
        assert created is not None
        return cls(
            id=t.id,
            user=t.user,
            label=t.label,
            kind=t.kind,  # type: ignore[arg-type]
            created_at=created,
            expires_at=stamp(t.expires_at),
            revoked_at=stamp(t.revoked_at),
            last_used_at=stamp(t.last_used_at),
        )


class NewToken(TokenView):
    token: str = Field(description="The secret: shown this once, never again")


class TeamView(View):
    name: str
    weight: float
    quota: dict[str, Any] = Field(
        default_factory=dict,
        description='{"limits": {"cpu": 8, "memory": BYTES, ...}, "runs": N, "borrow": {...}, '
        '"users": {NAME: WEIGHT}}',
    )
    created_at: dt.datetime

    @classmethod
    def of(cls, t: TeamRecord) -> TeamView:
        created = stamp(t.created_at)
        assert created is not None
        return cls(name=t.name, weight=t.weight, quota=t.quota, created_at=created)


class MemberView(View):
    user: str
    role: RoleName


class AuditView(View):
    id: int
    at: dt.datetime
    actor: str = Field(description="A user, or local:OS_USER for a command on the store itself")
    action: str
    team: str | None = None
    target: str
    detail: str

    @classmethod
    def of(cls, a: AuditRecord) -> AuditView:
        at = stamp(a.at)
        assert at is not None
        return cls(
            id=a.id, at=at, actor=a.actor, action=a.action, team=a.team, target=a.target, detail=a.detail
        )


class Me(View):
    """The signed-in user (``auth: false``: the server has no users, and asks no one to sign in)."""

    auth: bool = True
    user: str | None = None
    admin: bool = False
    roles: dict[str, RoleName] = Field(default_factory=dict, description="Their role in each of their teams")

    @classmethod
    def of(cls, p: Principal | None, auth: bool = True) -> Me:
        if p is None:
            return cls(auth=auth)
        return cls(user=p.user, admin=p.admin, roles={t: r.label for t, r in p.roles.items()})  # type: ignore[misc]


# -- request bodies ------------------------------------------------------------------------------
class UserRequest(View):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
    admin: StrictBool = False


class TokenRequest(View):
    user: str | None = Field(None, description="Whose token (default: the caller's; others': admins only)")
    label: str = Field("", max_length=200)
    expires: str | None = Field(None, description="Its life: 30d, 12h, 90m (default: none)")


class SessionRequest(View):
    token: str = Field(max_length=200, description="An API token (conveyor tokens create)")


class TeamRequest(View):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)


class GrantRequest(View):
    user: str = Field(min_length=1, max_length=100)
    role: RoleName


class QuotaRequest(View):
    limits: dict[str, float] = Field(
        default_factory=dict, description="cpu, memory (bytes), gpu, any resource"
    )
    runs: int | None = Field(None, ge=0, description="Runs going at once")
    borrow: dict[str, float] = Field(default_factory=dict, description="What it may borrow beyond its limits")
    users: dict[str, float] = Field(default_factory=dict, description="Each member's weight inside the team")
    weight: float | None = Field(None, gt=0, allow_inf_nan=False, description="The team's weight")


class WeightsRequest(View):
    users: dict[str, float] = Field(description="Each member's weight inside the team")
