"""The pure scheduling core: events in, commands out. No clock, no I/O, no threads."""

from conveyor.core.events import (
    AttemptCancelled,
    AttemptFailed,
    AttemptLost,
    AttemptSucceeded,
    CancelRequested,
    Event,
    RetryRequested,
    Start,
    Tick,
)
from conveyor.core.machine import (
    Cancel,
    Change,
    Command,
    Execute,
    Finished,
    InstanceSpec,
    Prior,
    RunMachine,
    Wake,
)
from conveyor.core.states import State

__all__ = [
    "AttemptCancelled",
    "AttemptFailed",
    "AttemptLost",
    "AttemptSucceeded",
    "Cancel",
    "CancelRequested",
    "Change",
    "Command",
    "Event",
    "Execute",
    "Finished",
    "InstanceSpec",
    "Prior",
    "RetryRequested",
    "RunMachine",
    "Start",
    "State",
    "Tick",
    "Wake",
]
