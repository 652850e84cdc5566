"""What a job ad says of its job, in HTCondor's own words: pure, tested on recorded job ads.

A job ad is the schedd's record of a job (``condor_q -l``; ``condor_history -l`` once it left
the queue). ``JobStatus`` is 1 Idle, 2 Running, 3 Removed, 4 Completed, 5 Held, 6 Transferring
Output, 7 Suspended. The answer's ``where`` is the one line a user sees on the attempt while it
waits or runs (why idle: the negotiator's ``LastRejMatchReason``; where: ``RemoteHost``, the
slot); an ``ended`` answer carries the exit code, or the reason it ended without the runner's
word (held: ``HoldReason``; removed; killed by a signal; out of memory).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from typing import Any

from conveyor.executors.batch import Status
from conveyor.executors.htcondor.submit import ATTEMPT, parse_attempt

#: The attributes a query asks for (a projection keeps the schedd's answer small).
ATTRIBUTES = [
    "ClusterId",
    "ProcId",
    "JobStatus",
    ATTEMPT,
    "HoldReason",
    "HoldReasonCode",
    "RemoveReason",
    "RemoteHost",
    "LastRemoteHost",
    "LastRejMatchReason",
    "NumJobStarts",
    "ExitCode",
    "ExitBySignal",
    "ExitSignal",
    "MemoryUsage",
    "RequestMemory",
]

#: HoldReasonCode 15: submitted on hold; 16: waiting for its input to be spooled. Both are a
#: step of a normal submission, not a failure.
SUBMIT_HOLDS = (15, 16)
#: HoldReasonCode 34: the job went over a resource it asked for (memory, in practice).
OUT_OF_RESOURCES = 34


def job_id(ad: Mapping[str, Any]) -> str | None:
    """``cluster.proc``, how the schedd names a job."""
    if "ClusterId" not in ad:
        return None
    return f"{ad['ClusterId']}.{ad.get('ProcId', 0)}"


def status_of(ad: Mapping[str, Any], schedd: str) -> Status | None:
    """The status of one of our jobs (None: the ad is no Conveyor attempt's)."""
    key = parse_attempt(ad.get(ATTEMPT))
    if key is None:
        return None
    code = _int(ad.get("JobStatus"))
    starts = _int(ad.get("NumJobStarts")) or 0
    host = _text(ad.get("RemoteHost")) or _text(ad.get("LastRemoteHost"))
    if code == 1:
        return Status(key, "queued", _idle(ad, schedd, starts))
    if code in (2, 6, 7):
        verb = {2: "running on", 6: "transferring output from", 7: "suspended on"}[code]
        again = f" (started {starts} times)" if starts > 1 else ""
        return Status(key, "running", f"{verb} {host or 'a slot'}{again}")
    if code == 5:
        reason = _text(ad.get("HoldReason")) or "no reason given"
        hold = _int(ad.get("HoldReasonCode"))
        if hold in SUBMIT_HOLDS:
            return Status(key, "queued", f"held in schedd {schedd} until submitted: {reason}")
        said = f"held: {reason}"
        if hold == OUT_OF_RESOURCES and "memory" in reason.lower():
            said = f"out of memory ({said})"
        return Status(key, "ended", f"held in schedd {schedd}", reason=said, blameless=starts == 0)
    if code == 3:
        why = _text(ad.get("RemoveReason"))
        said = f"removed: {why}" if why else "removed"
        if why and "PeriodicRemove" in why:
            said = f"removed by HTCondor at its timeout ({why})"
        return Status(key, "ended", f"removed from schedd {schedd}", reason=said, blameless=starts == 0)
    if code == 4:
        return _completed(key, ad, host)
    return Status(key, "queued", f"in schedd {schedd}, JobStatus {ad.get('JobStatus')!r}")


def gone(key: Any, schedd: str) -> Status:
    """A job neither in the queue nor in the history: its end is for the store to tell."""
    return Status(
        key, "ended", f"gone from schedd {schedd}", reason=f"gone from schedd {schedd}: not in its queue "
        "nor its history (removed with condor_rm -forcex, or the history was rotated)",
    )  # fmt: skip


def _idle(ad: Mapping[str, Any], schedd: str, starts: int) -> str:
    where = f"idle in schedd {schedd}"
    if starts:
        last = _text(ad.get("LastRemoteHost"))
        where += f", queued again after {starts} start{'s' if starts > 1 else ''}"
        where += f" (last on {last})" if last else ""
    rejected = _text(ad.get("LastRejMatchReason"))
    return f"{where}: {rejected}" if rejected else f"{where}: waiting for a matching slot"


def _completed(key: Any, ad: Mapping[str, Any], host: str | None) -> Status:
    where = f"ended on {host}" if host else "ended"
    if ad.get("ExitBySignal") is True:
        sig = _int(ad.get("ExitSignal"))
        used, asked = _int(ad.get("MemoryUsage")), _int(ad.get("RequestMemory"))
        if sig == signal.SIGKILL and used is not None and asked and used >= asked:
            return Status(key, "ended", where, reason=f"out of memory (used {used} MiB of {asked} MiB)")
        name = _signal_name(sig)
        return Status(key, "ended", where, reason=f"killed by signal {sig}{name}")
    return Status(key, "ended", where, exit_code=_int(ad.get("ExitCode")))


def _signal_name(sig: int | None) -> str:
    try:
        return f" ({signal.Signals(sig).name})" if sig is not None else ""
    except ValueError:
        return ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    """A string attribute, trimmed (the negotiator's reasons end in a space)."""
    return value.strip() or None if isinstance(value, str) else None
