"""People: users, their tokens, teams, who is in which team as what, and the audit of what
they did. The decisions (who may do what) are ``conveyor.auth``'s; here are only the rows.

Users and teams are never deleted (users are disabled): the audit and the runs name them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from conveyor.errors import Exists, PeopleNotFound
from conveyor.store import schema as t
from conveyor.store.part import Part
from conveyor.store.records import AuditRecord, TeamRecord, TokenRecord, UserRecord

#: The roles a member may hold in a team, weakest first.
ROLES = ("viewer", "member", "lead")


class People(Part):
    """Mixed into ``SqlStore``."""

    # -- users --------------------------------------------------------------------------------------
    def count_users(self) -> int:
        """How many users exist (disabled ones too): with none, the server needs no sign-in."""
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.users)).scalar() or 0)

    def add_user(self, name: str, *, admin: bool, now: float) -> UserRecord:
        rec = UserRecord(name=name, admin=admin, created_at=now)
        with self._tx() as conn:
            try:
                conn.execute(t.users.insert().values(name=name, admin=admin, created_at=now))
            except IntegrityError:
                raise Exists(f"user {name!r} exists already; see: conveyor users list") from None
        return rec

    def get_user(self, name: str) -> UserRecord | None:
        with self._tx() as conn:
            row = conn.execute(sa.select(t.users).where(t.users.c.name == name)).mappings().first()
        return None if row is None else _user(row)

    def list_users(self) -> list[UserRecord]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.users).order_by(t.users.c.name)).mappings().all()
        return [_user(r) for r in rows]

    def disable_user(self, name: str, now: float) -> UserRecord:
        """Disable the user: their tokens stop working (kept, for the audit)."""
        u = t.users
        with self._tx() as conn:
            conn.execute(
                u.update().where(u.c.name == name, u.c.disabled_at.is_(None)).values(disabled_at=now)
            )
            row = conn.execute(sa.select(u).where(u.c.name == name)).mappings().first()
        if row is None:
            raise PeopleNotFound(f"no user {name!r}; see: conveyor users list")
        return _user(row)

    # -- tokens -------------------------------------------------------------------------------------
    def add_token(self, rec: TokenRecord) -> None:
        with self._tx() as conn:
            conn.execute(t.tokens.insert().values(**_fields(rec)))

    def token_by_hash(self, digest: str) -> tuple[TokenRecord, UserRecord] | None:
        """The token whose secret hashes to ``digest``, with its user; None if there is none."""
        k, u = t.tokens, t.users
        with self._tx() as conn:
            row = conn.execute(sa.select(k).where(k.c.hash == digest)).mappings().first()
            if row is None:
                return None
            user = conn.execute(sa.select(u).where(u.c.name == row["user"])).mappings().first()
        if user is None:
            return None
        return TokenRecord(**dict(row)), _user(user)

    def list_tokens(self, user: str | None = None) -> list[TokenRecord]:
        k = t.tokens
        q = sa.select(k).order_by(k.c.created_at, k.c.id)
        if user is not None:
            q = q.where(k.c.user == user)
        with self._tx() as conn:
            return [TokenRecord(**dict(r)) for r in conn.execute(q).mappings()]

    def get_token(self, token_id: str) -> TokenRecord | None:
        k = t.tokens
        with self._tx() as conn:
            row = conn.execute(sa.select(k).where(k.c.id == token_id)).mappings().first()
        return None if row is None else TokenRecord(**dict(row))

    def revoke_token(self, token_id: str, now: float) -> TokenRecord:
        k = t.tokens
        with self._tx() as conn:
            conn.execute(
                k.update().where(k.c.id == token_id, k.c.revoked_at.is_(None)).values(revoked_at=now)
            )
            row = conn.execute(sa.select(k).where(k.c.id == token_id)).mappings().first()
        if row is None:
            raise PeopleNotFound(f"no token {token_id!r}; see: conveyor tokens list")
        return TokenRecord(**dict(row))

    def drop_sessions(self, now: float) -> int:
        """Delete the web UI's sessions that ended (expired or signed out): how many. API tokens
        are kept, revoked or not, for the audit."""
        k = t.tokens
        ended = sa.or_(k.c.revoked_at.is_not(None), k.c.expires_at <= now)
        with self._tx() as conn:
            return int(conn.execute(k.delete().where(k.c.kind == "session", ended)).rowcount or 0)

    def touch_token(self, token_id: str, now: float, *, every: float = 60.0) -> None:
        """Record that the token was used, at most once per ``every`` seconds (one write, none
        when it was recorded recently)."""
        k = t.tokens
        with self._tx() as conn:
            conn.execute(
                k.update()
                .where(
                    k.c.id == token_id,
                    sa.or_(k.c.last_used_at.is_(None), k.c.last_used_at < now - every),
                )
                .values(last_used_at=now)
            )

    # -- teams and their members --------------------------------------------------------------------
    def add_team(self, name: str, *, weight: float = 1.0, now: float) -> TeamRecord:
        with self._tx() as conn:
            try:
                conn.execute(t.teams.insert().values(name=name, weight=weight, quota="{}", created_at=now))
            except IntegrityError:
                raise Exists(f"team {name!r} exists already; see: conveyor teams list") from None
        return TeamRecord(name=name, created_at=now, weight=weight)

    def get_team(self, name: str) -> TeamRecord | None:
        with self._tx() as conn:
            row = conn.execute(sa.select(t.teams).where(t.teams.c.name == name)).mappings().first()
        return None if row is None else _team(row)

    def list_teams(self) -> list[TeamRecord]:
        with self._tx() as conn:
            rows = conn.execute(sa.select(t.teams).order_by(t.teams.c.name)).mappings().all()
        return [_team(r) for r in rows]

    def set_team(
        self, name: str, *, weight: float | None = None, quota: Mapping[str, Any] | None = None
    ) -> TeamRecord:
        """Change a team's weight and replace its quota (the JSON ``conveyor teams quota`` writes)."""
        values: dict[str, Any] = {}
        if weight is not None:
            values["weight"] = weight
        if quota is not None:
            values["quota"] = json.dumps(dict(quota), sort_keys=True)
        tm = t.teams
        with self._tx() as conn:
            if values:
                conn.execute(tm.update().where(tm.c.name == name).values(**values))
            row = conn.execute(sa.select(tm).where(tm.c.name == name)).mappings().first()
        if row is None:
            raise PeopleNotFound(f"no team {name!r}; see: conveyor teams list")
        return _team(row)

    def grant(self, team: str, user: str, role: str) -> None:
        """Make ``user`` a ``role`` of ``team`` (replacing the role they had there)."""
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
        m = t.memberships
        with self._tx() as conn:
            if conn.execute(sa.select(t.teams.c.name).where(t.teams.c.name == team)).first() is None:
                raise PeopleNotFound(f"no team {team!r}; see: conveyor teams list")
            if conn.execute(sa.select(t.users.c.name).where(t.users.c.name == user)).first() is None:
                raise PeopleNotFound(f"no user {user!r}; see: conveyor users list")
            done = conn.execute(m.update().where(m.c.team == team, m.c.user == user).values(role=role))
            if done.rowcount == 0:
                conn.execute(m.insert().values(team=team, user=user, role=role))

    def revoke(self, team: str, user: str) -> None:
        m = t.memberships
        with self._tx() as conn:
            done = conn.execute(m.delete().where(m.c.team == team, m.c.user == user))
        if done.rowcount == 0:
            raise PeopleNotFound(
                f"{user!r} is not a member of team {team!r}; see: conveyor teams members {team}"
            )

    def members(self, team: str) -> list[tuple[str, str]]:
        """The team's members and their roles, by name."""
        m = t.memberships
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(m.c.user, m.c.role).where(m.c.team == team).order_by(m.c.user)
            ).all()
        return [(str(u), str(r)) for u, r in rows]

    def roles_of(self, user: str) -> dict[str, str]:
        """The teams ``user`` is in, and their role in each."""
        m = t.memberships
        with self._tx() as conn:
            rows = conn.execute(sa.select(m.c.team, m.c.role).where(m.c.user == user)).all()
        return {str(team): str(role) for team, role in rows}

    # -- the audit ----------------------------------------------------------------------------------
    def record_audit(
        self, actor: str, action: str, *, team: str | None, target: str, detail: str = "", now: float
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                t.audit.insert().values(
                    at=now, actor=actor, action=action, team=team, target=target, detail=detail
                )
            )

    def audit_log(
        self, *, teams: Sequence[str] | None = None, actor: str | None = None, limit: int = 200
    ) -> list[AuditRecord]:
        """The newest audit rows first; ``teams``: only rows of these teams (and, with ``actor``,
        the rows of what that actor did); None: every row."""
        a = t.audit
        q = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        if teams is not None:
            seen = a.c.team.in_(list(teams))
            q = q.where(sa.or_(seen, a.c.actor == actor) if actor is not None else seen)
        with self._tx() as conn:
            return [AuditRecord(**dict(r)) for r in conn.execute(q).mappings()]


def _user(row: Any) -> UserRecord:
    return UserRecord(
        name=row["name"],
        admin=bool(row["admin"]),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
    )


def _team(row: Any) -> TeamRecord:
    return TeamRecord(
        name=row["name"],
        created_at=row["created_at"],
        weight=float(row["weight"]),
        quota=json.loads(row["quota"]),
    )


def _fields(rec: TokenRecord) -> dict[str, Any]:
    return dataclasses.asdict(rec)
