"""Where the CLI and ``conveyor.Client`` find the token for a server: ``$CONVEYOR_TOKEN``, else
the credentials file that ``conveyor login --server URL`` writes (mode 0600):

    # ~/.config/conveyor/credentials.toml
    [servers."http://127.0.0.1:8080"]
    token = "cvy_..."
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

from conveyor.errors import ConveyorError


def path() -> Path:
    """``$XDG_CONFIG_HOME/conveyor/credentials.toml`` (default: ``~/.config/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "conveyor" / "credentials.toml"


def _key(url: str) -> str:
    return url.rstrip("/")


def _read() -> dict[str, dict[str, str]]:
    try:
        data = tomllib.loads(path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConveyorError(f"{path()}: {exc}; fix it, or delete it and run conveyor login again") from None
    servers = data.get("servers", {})
    return {k: v for k, v in servers.items() if isinstance(v, dict)} if isinstance(servers, dict) else {}


def token_for(url: str) -> str | None:
    """The token to send to the server at ``url``: ``$CONVEYOR_TOKEN``, else the file's."""
    env = os.environ.get("CONVEYOR_TOKEN", "").strip()
    if env:
        return env
    found = _read().get(_key(url), {}).get("token")
    return found if isinstance(found, str) and found else None


def save(url: str, token: str) -> Path:
    """Keep ``token`` for the server at ``url`` (replacing the one kept), readable by its owner only."""
    servers = _read()
    servers[_key(url)] = {"token": token}
    lines = ["# written by conveyor login: one token per server"]
    for server, values in sorted(servers.items()):
        lines.append(f"\n[servers.{json.dumps(server)}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    where = path()
    where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(where, 0o600)
    return where


__all__ = ["path", "save", "token_for"]
