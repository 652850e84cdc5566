"""The runner as a command: what a container, a Kubernetes Job or an HTCondor job executes.

``python3 -m conveyor.executors.runjob`` (``RUNNER``) runs one attempt with Conveyor's runner
(``conveyor.executors.remote.run_remote``) and reports through the execution API, so the job
never holds the store's credentials. It reads, from its environment:

- ``CONVEYOR_JOB``: the attempt (``encode_job``: base64url JSON of the ``Job``);
- ``CONVEYOR_EXECUTION_API``: the API's address;
- the attempt's token: ``CONVEYOR_ATTEMPT_TOKEN``, or the file ``CONVEYOR_ATTEMPT_TOKEN_FILE``
  names (engines pass it as a secret file, never in a job description others can read);
- ``CONVEYOR_TIMEOUT``: the task's timeout in seconds, if it has one. The runner enforces it
  itself, from when it begins (a job's time queued, pulling its image or starting Python does
  not count): it exits at once with code 124, and the adapter reports the attempt timed out.

Exit codes: 0, its end is recorded (whatever the task's state: the store tells it); 3, it could
not begin (no job, no API): the engine's adapter reports the attempt lost, not counted against
the task; 124, it timed out. Any other code (137 after a kill) is for the engine's reason to
explain.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sys
import threading
from collections.abc import Mapping

from conveyor.runner import Job
from conveyor.store.records import Holder

#: The command a batch job runs (the image's ``python3`` has Conveyor installed).
RUNNER: tuple[str, ...] = ("python3", "-m", "conveyor.executors.runjob")
JOB = "CONVEYOR_JOB"
API = "CONVEYOR_EXECUTION_API"
TOKEN = "CONVEYOR_ATTEMPT_TOKEN"
TOKEN_FILE = "CONVEYOR_ATTEMPT_TOKEN_FILE"
TIMEOUT = "CONVEYOR_TIMEOUT"
#: Its exit code when it could not begin.
CANNOT_BEGIN = 3
#: Its exit code when the task ran past its timeout (as ``timeout(1)``'s).
TIMED_OUT = 124


def encode_job(job: Job) -> str:
    """The job as one environment-safe word."""
    data = dataclasses.asdict(job)
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_job(text: str) -> Job:
    """The job ``encode_job`` gave; ``ValueError`` if ``text`` is not one."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text.encode()))
        holder = data.pop("holder", None)
        return Job(**data, holder=Holder(**holder) if holder else None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{JOB} does not hold an attempt ({exc})") from None


def runner_env(job: Job, api: str, timeout: float | None = None) -> dict[str, str]:
    """What the job's environment must carry, the token aside."""
    env = {JOB: encode_job(job), API: api, "PYTHONUNBUFFERED": "1"}
    if timeout:
        env[TIMEOUT] = f"{timeout:g}"
    return env


def _token(env: Mapping[str, str]) -> str:
    if env.get(TOKEN):
        return env[TOKEN]
    path = env.get(TOKEN_FILE)
    if not path:
        raise ValueError(f"no token: set {TOKEN} or {TOKEN_FILE}")
    with open(path) as f:
        return f.read().strip()


def main(env: Mapping[str, str] | None = None) -> int:
    from conveyor.executors.port import Ticket
    from conveyor.executors.remote import run_remote

    env = os.environ if env is None else env
    try:
        job = decode_job(env.get(JOB, ""))
        api = env.get(API, "")
        if not api:
            raise ValueError(f"no execution API: set {API}")
        token = _token(env)
        timeout = float(env.get(TIMEOUT) or 0)
    except (ValueError, OSError) as exc:
        print(f"conveyor: this attempt cannot begin: {exc}", file=sys.stderr, flush=True)
        return CANNOT_BEGIN
    if timeout > 0:
        watchdog = threading.Timer(timeout, _timed_out, (timeout,))
        watchdog.daemon = True
        watchdog.start()
    out = run_remote(job, Ticket(api, token))
    print(f"conveyor: attempt {job.attempt} of {job.instance} in run {job.run_id}: {out.status}", flush=True)
    return 0


def _timed_out(timeout: float) -> None:
    print(f"conveyor: the task ran past its timeout of {timeout:g}s; stopping", file=sys.stderr, flush=True)
    os._exit(TIMED_OUT)  # its end is the adapter's to report: nothing more is recorded from here
