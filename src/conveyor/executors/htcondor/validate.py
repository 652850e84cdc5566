"""Check a submit description offline with HTCondor's own parsers (no schedd needed).

What the bindings can check without a schedd: that the submit file parses (``htcondor2.Submit``
of its text, HTCondor's submit-language parser), that it reads back to the same commands, and
that every command whose value is a ClassAd expression (``requirements``, ``periodic_remove``,
``request_*``, the custom ``MY.*`` attributes) parses as one (``classad2.ExprTree``) and
evaluates, against a job ad made of the description, to the type HTCondor expects. What only a
schedd checks (that the accounting group exists, that a slot can match, that the image pulls) is
not checked here.
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import ExecutorError
from conveyor.executors import need
from conveyor.executors.htcondor.submit import submit_text

#: Commands whose value is a ClassAd expression, and the type it must evaluate to against the job
#: ad alone (``requirements`` reads the slot's attributes too: it is parsed, not evaluated).
EXPRESSIONS: dict[str, type] = {"periodic_remove": bool}


def validate(desc: dict[str, str], *, name: str | None = None) -> Any:
    """The parsed ``htcondor2.Submit``; a one-line ``ExecutorError`` naming the bad command."""
    htcondor2 = need("htcondor2", "htcondor")
    classad2 = need("classad2", "htcondor")
    who = name or desc.get("batch_name", "a job")
    try:
        parsed = htcondor2.Submit(submit_text(desc))
    except Exception as exc:
        raise ExecutorError(f"the submit description of {who} does not parse: {exc}") from None
    back = {k: parsed[k] for k in parsed}
    if back != desc:
        differs = sorted(k for k in set(back) | set(desc) if back.get(k) != desc.get(k))
        raise ExecutorError(f"the submit description of {who} reads back differently at {differs[0]!r}")
    ad = _job_ad(desc, classad2)
    for command, value in desc.items():
        expected = _expected(command)
        if expected is None and command != "requirements":
            continue
        try:
            expr = classad2.ExprTree(value)
            if expected is None:
                continue
            result = expr.eval(ad)
        except Exception as exc:
            raise ExecutorError(
                f"the submit description of {who}: {command} = {value} is not a ClassAd expression ({exc})"
            ) from None
        if not isinstance(result, expected) or (expected is int and isinstance(result, bool)):
            raise ExecutorError(
                f"the submit description of {who}: {command} = {value} gives {result!r}, "
                f"not a {expected.__name__}"
            )
    return parsed


def _expected(command: str) -> type | None:
    if command in EXPRESSIONS:
        return EXPRESSIONS[command]
    if command.startswith("request_"):
        return int
    if command.startswith("MY."):
        return str
    return None


def _job_ad(desc: dict[str, str], classad2: Any) -> Any:
    """A job ad as the schedd would start it, for the expressions to be evaluated against: the
    attributes they read (``JobStatus``, ``JobCurrentStartDate``) with a job just started."""
    import time

    ad = classad2.ClassAd()
    ad["JobStatus"] = 2
    ad["JobCurrentStartDate"] = int(time.time())
    ad["EnteredCurrentStatus"] = int(time.time())
    for command in ("request_cpus", "request_memory", "request_gpus"):
        if command in desc:
            ad["Request" + command.split("_", 1)[1].capitalize()] = classad2.ExprTree(desc[command])
    return ad
