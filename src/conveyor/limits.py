"""The limits that keep one task's output or one request from taking a server down.

    # conveyor.toml
    [logs]
    limit = "100 MiB"   # an attempt's log is cut here          CONVEYOR_LOG_LIMIT
    read = "1 MiB"      # the most of one log an answer holds   CONVEYOR_LOG_READ
    keep_days = 30      # what `conveyor logs prune` keeps       CONVEYOR_LOG_KEEP_DAYS
    [params]
    max_size = "64 KiB" # one parameter of a run, as JSON        CONVEYOR_PARAM_MAX_SIZE

The variables win over the file (as for the executor's settings, ``executors.choice``). A size is
a number of bytes or a number with a binary unit (``64 KiB``, ``100 MiB``, ``1 GiB``; ``K``,
``M`` and ``G`` mean the same). A bad value is a ``LoadError`` naming the setting.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import LoadError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: The defaults: an attempt's log, one log in an answer, one parameter of a run.
LOG_LIMIT = 100 * MiB
LOG_READ = 1 * MiB
PARAM_MAX_SIZE = 64 * KiB

_UNITS = {"": 1, "b": 1, "k": KiB, "kb": KiB, "kib": KiB, "m": MiB, "mb": MiB, "mib": MiB}
_UNITS |= {"g": GiB, "gb": GiB, "gib": GiB}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True, slots=True)
class Limits:
    log_limit: int = LOG_LIMIT  # bytes of an attempt's log kept; then one marker line
    log_read: int = LOG_READ  # bytes of one log a JSON answer holds (its end)
    param_max_size: int = PARAM_MAX_SIZE  # bytes of one run parameter's JSON
    keep_days: float | None = None  # ``conveyor logs prune`` without --older-than (None: required)


def size(value: Any, what: str) -> int:
    """Bytes from ``64 KiB``, ``100MiB``, ``1 GiB`` or a whole number; ``what`` names the setting
    in the error."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        m = _SIZE.match(str(value))
        if m is None or m.group(2).lower() not in _UNITS:
            raise LoadError(f'{what}: {value!r} is not a size; write it like "64 KiB" or "100 MiB"')
        number, unit = float(m.group(1)), m.group(2).lower()
    found = int(number * _UNITS[unit])
    if found < 1:
        raise LoadError(f"{what}: {value!r} must be at least 1 byte")
    return found


def age(value: str, what: str) -> float:
    """Seconds from ``30d``, ``12h``, ``90m``, ``2w`` or ``45s``."""
    m = _AGE.match(value)
    if m is None:
        raise LoadError(f"{what}: {value!r} is not an age; write it like 30d, 12h or 2w")
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]


def human(n: int) -> str:
    """``100 MiB``, ``64 KiB``, ``1.5 MiB``, ``300 bytes``."""
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            shown = f"{n / scale:.1f}".removesuffix(".0")
            return f"{shown} {unit}"
    return f"{n} bytes"


def read(root: Path | None = None, environ: Mapping[str, str] | None = None) -> Limits:
    """The limits from the ``conveyor.toml`` in ``root`` (default: here) or above, then the
    environment."""
    env = os.environ if environ is None else environ
    logs, params, where = _from_file(root)
    found: dict[str, Any] = {}
    for key, attr, section, table in (
        ("limit", "log_limit", "[logs]", logs),
        ("read", "log_read", "[logs]", logs),
        ("max_size", "param_max_size", "[params]", params),
    ):
        if key in table:
            found[attr] = size(table[key], f"{where}: {section} {key}")
    if "keep_days" in logs:
        found["keep_days"] = _days(logs["keep_days"], f"{where}: [logs] keep_days")
    for var, attr in (
        ("CONVEYOR_LOG_LIMIT", "log_limit"),
        ("CONVEYOR_LOG_READ", "log_read"),
        ("CONVEYOR_PARAM_MAX_SIZE", "param_max_size"),
    ):
        if env.get(var):
            found[attr] = size(env[var], var)
    if env.get("CONVEYOR_LOG_KEEP_DAYS"):
        found["keep_days"] = _days(env["CONVEYOR_LOG_KEEP_DAYS"], "CONVEYOR_LOG_KEEP_DAYS")
    return Limits(**found)


def _days(value: Any, what: str) -> float:
    try:
        days = float(value)
    except (TypeError, ValueError):
        days = -1.0
    if isinstance(value, bool) or not days > 0:
        raise LoadError(f"{what}: {value!r} must be a number of days above 0, like 30")
    return days


def _from_file(root: Path | None) -> tuple[dict[str, Any], dict[str, Any], str]:
    from conveyor.project import FILE

    here = (root or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / FILE
        if path.is_file():
            break
    else:
        return {}, {}, FILE
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}, {}, str(path)  # reported where the project is read
    tables = []
    for name in ("logs", "params"):
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise LoadError(f'{path}: [{name}] must be a table, like [logs] limit = "100 MiB"')
        tables.append(table)
    return tables[0], tables[1], str(path)
