"""The execution API's signing keys, kept in the store so that any server verifies a token that
another minted (servers keep no state of their own). The newest key signs; every key kept
verifies. A key older than ``rotate_after`` is replaced by a new one at the next signing, and
dropped once no token it signed can still be valid."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from conveyor.store import schema as t
from conveyor.store.part import Part


class Keys(Part):
    """Mixed into ``SqlStore``."""

    def signing_key(self, now: float, rotate_after: float, keep_for: float) -> tuple[str, bytes]:
        """The key that signs now, as (id, secret): the newest, or a new one if the newest is
        older than ``rotate_after`` (or there is none). Keys older than ``rotate_after +
        keep_for`` are deleted. Two servers that create one at the same moment each sign with
        their own: both verify, and the newest signs from then on."""
        k = t.signing_keys
        with self._tx() as conn:
            row = conn.execute(
                sa.select(k.c.id, k.c.secret, k.c.created_at).order_by(k.c.created_at.desc()).limit(1)
            ).first()
        if row is not None and row[2] > now - rotate_after:
            return str(row[0]), bytes.fromhex(row[1])
        kid, secret = secrets.token_hex(8), secrets.token_bytes(32)
        with self._tx() as conn:
            conn.execute(k.insert().values(id=kid, secret=secret.hex(), created_at=now))
            conn.execute(k.delete().where(k.c.created_at < now - rotate_after - keep_for))
        return kid, secret

    def verifying_key(self, kid: str) -> bytes | None:
        """The secret of key ``kid``; None if there is no such key (never was, or dropped)."""
        k = t.signing_keys
        with self._tx() as conn:
            secret = conn.execute(sa.select(k.c.secret).where(k.c.id == kid)).scalar()
        return None if secret is None else bytes.fromhex(secret)
