"""Identity, teams, roles and the audit: who may ask the server what.

- ``tokens``: API and session tokens, shown once, kept hashed; verified to a ``Principal``;
- ``roles``: pure: ``Role`` (viewer < member < lead), ``Principal``, one ``Rule`` per API
  route (``RULES``) and ``decide``;
- ``authn``: the ``Authenticator`` port and its token adapter (where OIDC would plug in);
- ``people``: users, tokens, teams, roles and quotas managed, every change audited;
- ``views``: what the API and the CLI show of them.

The HTTP side (the dependency every route gets) is ``conveyor.api.access``: only ``api/`` knows
HTTP. Auth is on as soon as one user exists in the store.
"""

from __future__ import annotations

from conveyor.auth.authn import SESSION_COOKIE, Authenticator, TokenAuthenticator
from conveyor.auth.roles import RULES, Principal, Role, Rule, Verdict, decide

__all__ = [
    "RULES",
    "SESSION_COOKIE",
    "Authenticator",
    "Principal",
    "Role",
    "Rule",
    "TokenAuthenticator",
    "Verdict",
    "decide",
]
