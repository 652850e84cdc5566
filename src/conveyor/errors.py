"""Conveyor's one error tree.

Every error a user can meet is a ``ConveyorError``; third-party errors are translated into one of
these at the adapter that called the third party. The message says what happened, to what, and
what to do.

    ConveyorError
    ├── DefinitionError        a task or pipeline is defined wrongly (raised at import time)
    ├── ParameterError         a parameter is missing, unknown or of the wrong type
    ├── GraphError             the recorded graph is not runnable (cycle, duplicate names, ...)
    │   └── CycleError
    ├── LoadError              a TARGET like ``file.py:pipeline`` cannot be loaded
    ├── ResourceError          a task asks for more than the executor can ever give
    ├── StoreError             the store cannot be opened, read or written
    │   ├── SchemaError        the store's schema is older or newer than the code
    │   └── StaleEpochError    a write carried an epoch that is no longer the lease's (fencing)
    ├── NotFound               no such run, pipeline, backfill, user, team or token
    │   ├── RunNotFound
    │   ├── PipelineNotFound
    │   ├── BackfillNotFound
    │   └── PeopleNotFound     no such user, team, membership or token
    ├── Exists                 a user or team of that name exists already
    ├── Unauthenticated        no token, or one that is unknown, expired, revoked or disabled
    ├── Forbidden              the caller's role is not enough for what was asked
    ├── RunBusy                another live process drives the run
    │   └── RunExists          an unfinished run of the same pipeline and parameters exists
    ├── NameInUse              another live scheduler has registered under this name
    ├── TargetError            a target template or a target write is wrong
    ├── TransitionError        the scheduling core was asked for an illegal state change (a bug)
    ├── ServerError            a Conveyor server cannot be reached, or answered with an error
    │   └── UntrustedResult    a server sent a pickle the client was not told to load
    ├── CannotListen           ``conveyor server`` cannot listen on the address and port given
    ├── ExecutorError          an executor is unknown, not installed, misconfigured or unreachable
    ├── ImageError             a project's image cannot be built (podman missing, a failed build)
    ├── NotebookError          a notebook task's notebook, kernel or parameters are wrong, or a cell raised
    ├── GitError               a git command of the project's git remote failed (conveyor.git)
    └── ReproduceError         a run cannot be reproduced (no commit, repository gone, --strict)
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Something went wrong in Conveyor."""

    #: The exit code the CLI uses for this error: 2 is bad input.
    exit_code = 2


class DefinitionError(ConveyorError):
    """A task or pipeline is defined wrongly."""


class ParameterError(ConveyorError):
    """A parameter is missing, unknown or of the wrong type.

    ``problems`` names each bad field with what is wrong with it (the API answers 422 with them).
    """

    def __init__(self, message: str, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or {}


class GraphError(ConveyorError):
    """The pipeline's graph cannot be run."""


class CycleError(GraphError):
    """The pipeline's graph has a cycle."""


class LoadError(ConveyorError):
    """A pipeline cannot be loaded from the given target."""


class ResourceError(ConveyorError):
    """A task asks for more resources than the executor has."""


class StoreError(ConveyorError):
    """The store cannot be opened, read or written."""


class SchemaError(StoreError):
    """The store's schema does not match this version of Conveyor."""


class StaleEpochError(StoreError):
    """A write carried a lease epoch that is no longer current; another owner took over."""

    exit_code = 1


class NotFound(ConveyorError):
    """No run, pipeline or backfill by this name."""


class RunNotFound(NotFound):
    """No run has this id."""


class PipelineNotFound(NotFound):
    """The project has no pipeline by this name."""


class BackfillNotFound(NotFound):
    """No backfill has this id."""


class PeopleNotFound(NotFound):
    """No user, team, membership or token by this name."""


class Exists(ConveyorError):
    """A user or team of that name exists already."""


class Unauthenticated(ConveyorError):
    """The request carries no token, or one that is unknown, expired, revoked, or whose user is
    disabled: sign in (``CONVEYOR_TOKEN``, ``conveyor login``, the web UI's sign-in page)."""


class Forbidden(ConveyorError):
    """The caller is signed in, but their role is not enough for what they asked."""


class RunBusy(ConveyorError):
    """Another live process is driving this run. ``run_id`` and ``owner`` name them when known:
    a second `conveyor run` of the same command follows that run instead."""

    def __init__(self, message: str, run_id: str | None = None, owner: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.owner = owner


class RunExists(RunBusy):
    """An unfinished run of the same pipeline and parameters exists: a run's key is unique
    among unfinished runs, so another process created it first."""


class NameInUse(ConveyorError):
    """Another live scheduler uses this name."""


class TargetError(ConveyorError):
    """A target is wrong or could not be written."""


class TransitionError(ConveyorError):
    """The scheduling core was asked for a state change its table does not allow."""

    exit_code = 1


class ServerError(ConveyorError):
    """A Conveyor server cannot be reached, or answered with an error."""


class UntrustedResult(ServerError):
    """A task's result is a pickle, and the client was not told to trust the server that sends it:
    unpickling runs whatever code the pickle names (``Client(url, trust_pickles=True)``)."""


class CannotListen(ConveyorError):
    """``conveyor server`` cannot listen on the address and port it was given."""


class ExecutorError(ConveyorError):
    """An executor is unknown, its extra is not installed, its settings are wrong, or its engine
    cannot be reached."""


class NotebookError(ConveyorError):
    """A notebook task cannot run (its notebook, kernel or parameters are wrong) or one of its
    cells raised; the message names the cell and where the notebook up to it is kept."""


class GitError(ConveyorError):
    """A git command behind the project's git remote failed, or git is not installed."""


class ReproduceError(ConveyorError):
    """A run cannot be reproduced: no recorded commit, its repository is gone, or (``--strict``)
    its environment differs from this one."""


class ImageError(ConveyorError):
    """A project's image cannot be built or found (podman missing, a failed build, a bad recipe)."""
