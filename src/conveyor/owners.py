"""Who drives a run: ``host:pid`` owners of leases, and whether one of this machine is gone."""

from __future__ import annotations

import os
import socket


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` (host:pid) is a process on this host that no longer exists, or a
    zombie (it exited; its parent has not reaped it yet): either holds nothing."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rpartition(")")[2].split()[:1]  # the name may hold spaces and ')'
    except FileNotFoundError:
        return True  # it ended just now
    except OSError:
        return False  # no /proc here: alive, as far as we can tell
    return state == ["Z"]
