"""``[executor.kubernetes]``: where the Jobs go and what they look like.

Settings come from conveyor.toml, then ``CONVEYOR_KUBERNETES_<KEY>`` variables (strings: a table
such as ``namespaces`` is written ``team-a=ns-a,team-b=ns-b`` there), so every value is checked
and converted here once, with one line naming the setting when it is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ExecutorError

#: The most a Kubernetes name or label value may be (RFC 1123 label / label value).
NAME_MAX = 63
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
KNOWN = (
    "kubeconfig",
    "context",
    "namespace",
    "namespaces",
    "image",
    "kueue",
    "queues",
    "cluster_queue",
    "ttl",
    "service_account",
    "api",
    "image_pull_policy",
    "jobs",
)


@dataclass(frozen=True, slots=True)
class KubeSettings:
    """The checked settings. ``namespace``: a team's namespace when ``namespaces`` does not name
    it, with ``{team}`` replaced (``conveyor-{team}``); runs of no team go to ``default_namespace``.
    ``kueue``: label each Job with its team's LocalQueue (``queues``, else ``{team}-queue``) and
    create it suspended, as Kueue expects. ``api``: the execution API as the pods reach it."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    namespaces: Mapping[str, str] = field(default_factory=dict)
    image: str = "python:3.11-slim"
    kueue: bool = False
    queues: Mapping[str, str] = field(default_factory=dict)
    cluster_queue: str = "conveyor"
    ttl: int = 3600
    service_account: str | None = None
    api: str | None = None
    image_pull_policy: str = "IfNotPresent"
    jobs: int | None = None  # attempts handed to the cluster at once (BatchExecutor.JOBS unless set)

    def namespace_of(self, team: str) -> str:
        """The namespace a team's Jobs, Secrets, quota and LocalQueue live in."""
        if team in self.namespaces:
            return self.namespaces[team]
        template = self.namespace or "conveyor-{team}"
        if not team:
            return template.replace("-{team}", "").replace("{team}", "") or "conveyor"
        return template.replace("{team}", _dns(team))[:NAME_MAX].rstrip("-")

    def queue_of(self, team: str) -> str:
        """The team's Kueue LocalQueue (in the team's namespace)."""
        return self.queues.get(team) or f"{_dns(team) or 'conveyor'}-queue"[:NAME_MAX]


def _dns(text: str) -> str:
    """``text`` made a DNS label: lower case, [a-z0-9-], no dash at either end."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def parse(raw: Mapping[str, Any] | None) -> KubeSettings:
    """Check ``[executor.kubernetes]``; a one-line ``ExecutorError`` names the bad setting."""
    s = dict(raw or {})
    unknown = sorted(set(s) - set(KNOWN) - {"address"})
    if unknown:
        raise ExecutorError(
            f"[executor.kubernetes] has no setting {unknown[0]!r}; the settings are {', '.join(KNOWN)}"
        )
    out: dict[str, Any] = {}
    for key in ("kubeconfig", "context", "image", "service_account", "api", "image_pull_policy"):
        if s.get(key) is not None:
            out[key] = _text(key, s[key])
    if "namespace" in s:
        _name("namespace", str(s["namespace"]).replace("{team}", "team"))
        out["namespace"] = str(s["namespace"]).strip()
    if "cluster_queue" in s:
        out["cluster_queue"] = _name("cluster_queue", s["cluster_queue"])
    for key in ("namespaces", "queues"):
        if key in s:
            table = _table(key, s[key])
            out[key] = {team: _name(f"{key}.{team}", value) for team, value in table.items()}
    if "kueue" in s:
        out["kueue"] = _flag("kueue", s["kueue"])
    if "ttl" in s:
        out["ttl"] = _seconds("ttl", s["ttl"])
    if "jobs" in s:
        out["jobs"] = max(1, _seconds("jobs", s["jobs"]))
    if "api" in out and not str(out["api"]).startswith(("http://", "https://")):
        raise ExecutorError(
            f"[executor.kubernetes] api must be the execution API's URL as pods reach it, like "
            f'"http://conveyor.conveyor.svc:8080"; got {out["api"]!r}'
        )
    return KubeSettings(**out)


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ExecutorError(f"[executor.kubernetes] {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _name(key: str, value: Any) -> str:
    text = _text(key, value)
    if len(text) > NAME_MAX or not _DNS_LABEL.match(text):
        raise ExecutorError(
            f"[executor.kubernetes] {key} = {text!r} is not a Kubernetes name: lower-case letters, "
            f"digits and '-', at most {NAME_MAX} characters, starting and ending alphanumeric"
        )
    return text


def _table(key: str, value: Any) -> dict[str, str]:
    if isinstance(value, str):  # from a CONVEYOR_KUBERNETES_* variable: team=ns,team2=ns2
        pairs = [p.partition("=") for p in value.split(",") if p.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ExecutorError(
                f"[executor.kubernetes] {key} must be a table of team = name, or team=name,team2=name2; "
                f"got {value!r}"
            )
        return {a.strip(): b.strip() for a, _, b in pairs}
    if not isinstance(value, Mapping):
        raise ExecutorError(f"[executor.kubernetes] {key} must be a table of team = name, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _flag(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ExecutorError(f"[executor.kubernetes] {key} must be true or false, got {value!r}")


def _seconds(key: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0:
        raise ExecutorError(
            f"[executor.kubernetes] {key} must be a whole number of seconds >= 0, got {value!r}"
        )
    return number
