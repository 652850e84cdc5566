"""One attempt as an HTCondor submit description: pure, so it can be reviewed and tested offline.

The job runs Conveyor's runner (``python3 -m conveyor.executors.runjob``) with the task's
resources as ``request_*``, is charged to its team's accounting group, and carries two custom
attributes that make it findable without Conveyor's memory of it: ``ConveyorAttempt``
(``run/instance/attempt``: a new owner adopts its jobs by it after a takeover) and
``ConveyorPool`` (which executor pool submitted it: the schedd is queried by it).

The attempt's token never enters the job ad (``condor_q -l`` shows every user the ad, and its
``Environment``): it is a 0600 file the submit side writes and HTCondor transfers into the job's
private scratch directory, named to the runner by ``CONVEYOR_ATTEMPT_TOKEN_FILE``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.executors import need
from conveyor.executors.batch import STARTING, Key, Spec
from conveyor.executors.htcondor.settings import CondorSettings, group_of

ATTEMPT = "ConveyorAttempt"
POOL = "ConveyorPool"
TOKEN_FILE = "conveyor-token"
#: Seconds HTCondor waits past a task's timeout before it removes the job itself. The runner
#: ends the attempt at its timeout (exit 124) and Conveyor removes a job still running
#: ``STARTING`` seconds later; this is the backstop for a job whose runner and Conveyor are gone.
TIMEOUT_SLACK = int(STARTING) + 60


def attempt_id(key: Key) -> str:
    run, instance, attempt = key
    return f"{run}/{instance}/{attempt}"


def parse_attempt(value: object) -> Key | None:
    """The key in a job ad's ``ConveyorAttempt``; None if it is not one of ours."""
    if not isinstance(value, str):
        return None
    parts = value.split("/")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def classad_string(text: str) -> str:
    """A ClassAd string literal (what ``classad2.quote`` gives, without needing the bindings)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Files:
    """Where the submit side keeps one job's files."""

    folder: Path

    @property
    def token(self) -> Path:
        return self.folder / TOKEN_FILE

    @property
    def output(self) -> Path:
        return self.folder / "out"

    @property
    def error(self) -> Path:
        return self.folder / "err"

    @property
    def log(self) -> Path:
        return self.folder / "log"


def files_of(spec: Spec, settings: CondorSettings) -> Files:
    return Files(Path(settings.folder).absolute() / spec.name)


def _quote_word(word: str) -> str:
    """One argument or environment value in the submit language's "new syntax": a word with a
    space or quote goes in single quotes, a single quote inside doubled, a double quote doubled."""
    word = word.replace('"', '""')
    if not word or any(c in word for c in " \t'"):
        return "'" + word.replace("'", "''") + "'"
    return word


def arguments(words: list[str] | tuple[str, ...]) -> str:
    return '"' + " ".join(_quote_word(w) for w in words) + '"'


def environment(env: dict[str, str]) -> str:
    return '"' + " ".join(f"{k}={_quote_word(v)}" for k, v in env.items()) + '"'


def description(spec: Spec, settings: CondorSettings, pool: str, user: str | None = None) -> dict[str, str]:
    """The submit commands of one attempt, in the order a person reads them."""
    files = files_of(spec, settings)
    words = list(spec.command)
    if words and words[0] in ("python3", "python"):
        words[0] = settings.python
    if os.path.isabs(words[0]):
        executable, args = words[0], words[1:]
    else:  # found on the execute node's PATH, not transferred from here
        executable, args = "/usr/bin/env", words
    env = {k: v for k, v in spec.env.items() if k != "CONVEYOR_ATTEMPT_TOKEN"}  # never in the ad
    if settings.api:
        env["CONVEYOR_EXECUTION_API"] = settings.api
    env["CONVEYOR_ATTEMPT_TOKEN_FILE"] = TOKEN_FILE
    d: dict[str, str] = {}
    if settings.image:
        d["universe"] = "container"
        d["container_image"] = settings.image
    else:
        d["universe"] = "vanilla"
    d["executable"] = executable
    d["transfer_executable"] = "false"
    d["arguments"] = arguments(args)
    d["environment"] = environment(env)
    d["batch_name"] = spec.name
    r = spec.resources
    d["request_cpus"] = str(r.cpu)
    if r.memory:
        d["request_memory"] = str(math.ceil(r.memory / 2**20))  # MiB, HTCondor's unit
    if r.gpu:
        d["request_gpus"] = str(r.gpu)
    for name, amount in sorted(r.custom.items()):  # a machine resource the pool declares
        d[f"request_{name}"] = str(amount)
    group = group_of(spec.team, settings)
    if group:
        d["accounting_group"] = group
        d["accounting_group_user"] = user or _login()
    if settings.requirements:
        d["requirements"] = settings.requirements
    d[f"MY.{ATTEMPT}"] = classad_string(attempt_id(spec.key))
    d[f"MY.{POOL}"] = classad_string(pool)
    d["output"] = str(files.output)
    d["error"] = str(files.error)
    d["log"] = str(files.log)
    d["should_transfer_files"] = "YES"
    d["when_to_transfer_output"] = "ON_EXIT"
    d["transfer_input_files"] = str(files.token)
    if spec.timeout is not None:
        limit = math.ceil(spec.timeout) + TIMEOUT_SLACK
        d["periodic_remove"] = f"(JobStatus == 2) && (time() - JobCurrentStartDate > {limit})"
    d["notification"] = "never"
    return d


def submit_text(desc: dict[str, str]) -> str:
    """The description as a submit file (what ``condor_submit`` reads)."""
    return "".join(f"{k} = {v}\n" for k, v in desc.items()) + "queue\n"


def as_submit(desc: dict[str, str]) -> Any:
    """The description as the bindings' ``htcondor2.Submit`` (parsed by HTCondor's own code)."""
    htcondor2 = need("htcondor2", "htcondor")
    return htcondor2.Submit(desc)


def _login() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "conveyor"
