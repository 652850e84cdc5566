"""Signals to a run's driver (Ctrl-C: cancel, twice: kill) and to a scheduler (SIGTERM, Ctrl-C:
hand over and stop, twice: exit; SIGHUP: reload)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.driver import RunDriver
    from conveyor.scheduler import Scheduler


@contextmanager
def interrupts(driver: RunDriver) -> Iterator[None]:
    """Ctrl-C once: cancel gracefully. Twice: kill attempts and stop at once."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        driver.request_cancel()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@contextmanager
def signals(scheduler: Scheduler) -> Iterator[None]:
    """SIGTERM or Ctrl-C once: stop after handing the partition over. Twice: exit now.
    SIGHUP: load the project's pipelines anew."""

    def handler(signum: int, frame: Any) -> None:
        scheduler.stop()
        if scheduler._stopping > 1:
            raise KeyboardInterrupt

    def reload(signum: int, frame: Any) -> None:
        scheduler.request_reload()

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    old_hup = signal.signal(signal.SIGHUP, reload)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)
