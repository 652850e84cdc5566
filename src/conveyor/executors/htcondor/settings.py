"""``[executor.htcondor]``: which schedd, which accounting group per team, which image.

Settings come from conveyor.toml, then ``CONVEYOR_HTCONDOR_<KEY>`` variables (strings: a
variable gives ``groups`` as ``team=group,team2=group2``). Pure: read here, checked here, each
bad value refused with one line that names it and says what to write instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ExecutorError
from conveyor.executors.batch import settings_of

#: What a user may set, with what it means (the one-line refusal of an unknown key lists them).
KEYS = {
    "schedd": "the schedd's name, as condor_q -name takes it (default: the local schedd)",
    "collector": "host:port of the collector that knows the schedd, as condor_q -pool takes it",
    "groups": "a table team -> accounting group (default group_<team>)",
    "user": "accounting_group_user (default: the user Conveyor runs as)",
    "image": "a container image: jobs run in the container universe (default: vanilla)",
    "requirements": "a ClassAd expression every job's requirements must meet",
    "api": "the execution API URL as execute nodes reach it",
    "python": "the Python that runs the runner on execute nodes (default python3 on the PATH)",
    "folder": "where the submit side keeps each job's token, output, error and log files",
    "poll": "seconds between two queries of the schedd (default 2)",
}

_GROUP = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True, slots=True)
class CondorSettings:
    schedd: str | None = None
    collector: str | None = None
    groups: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    image: str | None = None
    requirements: str | None = None
    api: str | None = None
    python: str = "python3"
    folder: str = ".conveyor/htcondor"
    poll: float = 2.0

    @property
    def schedd_name(self) -> str:
        """How messages name the schedd."""
        where = self.schedd or "the local schedd"
        return f"{where} (collector {self.collector})" if self.collector else where


def parse(raw: Mapping[str, Any] | None) -> CondorSettings:
    """Settings from conveyor.toml and the environment; one ``ExecutorError`` line per bad value."""
    given = dict(raw or {})
    address = given.pop("address", None)  # --executor-address: the schedd's name
    if address is not None:
        given.setdefault("schedd", address)
    given = settings_of(given, list(KEYS), "htcondor")
    out: dict[str, Any] = {}
    for key in ("schedd", "collector", "user", "image", "requirements", "api", "python", "folder"):
        if key in given:
            value = given[key]
            if not isinstance(value, str) or not value.strip():
                raise ExecutorError(f"[executor.htcondor] {key} must be a non-empty string ({KEYS[key]})")
            out[key] = value.strip()
    if "api" in out and not out["api"].startswith(("http://", "https://")):
        raise ExecutorError(
            f'[executor.htcondor] api must be a URL execute nodes reach, like "http://submit.example:8080", '
            f"got {out['api']!r}"
        )
    if "groups" in given:
        out["groups"] = _groups(given["groups"])
    if "poll" in given:
        try:
            poll = float(given["poll"])
        except (TypeError, ValueError):
            poll = -1.0
        if poll <= 0:
            raise ExecutorError(f"[executor.htcondor] poll must be seconds > 0, got {given['poll']!r}")
        out["poll"] = poll
    return CondorSettings(**out)


def _groups(value: Any) -> dict[str, str]:
    if isinstance(value, str):  # CONVEYOR_HTCONDOR_GROUPS="analytics=group_physics.analytics,ml=group_ml"
        pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ExecutorError(
                f"[executor.htcondor] groups must read team=group,team2=group2; got {value!r}"
            )
        value = {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(value, Mapping):
        raise ExecutorError(
            '[executor.htcondor] groups must be a table of team = "accounting group", '
            f'like groups = {{ analytics = "group_physics.analytics" }}; got {value!r}'
        )
    for team, group in value.items():
        if not isinstance(group, str) or not _GROUP.match(group):
            raise ExecutorError(
                f"[executor.htcondor] groups: team {team!r} maps to {group!r}, which is not an accounting "
                "group name (letters, digits, '_', '-', and '.' between a group and its subgroup)"
            )
    return {str(k): str(v) for k, v in value.items()}


def group_of(team: str, settings: CondorSettings) -> str | None:
    """The accounting group a team's jobs are charged to: the settings' map, else ``group_<team>``
    (HTCondor's convention for group quotas); None for a run of no team."""
    if not team:
        return None
    if team in settings.groups:
        return settings.groups[team]
    return "group_" + re.sub(r"[^A-Za-z0-9_\-]", "_", team)
