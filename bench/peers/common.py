"""What every engine script shares: its command line and how it reports one measurement.

An engine script is run as ``PYTHON run_ENGINE.py SCENARIO N [VARIANT]`` in a fresh temporary
directory (its working directory), does the scenario once, and prints one line
``BENCH-RESULT {json}`` on stdout: ``seconds`` (the timed part), ``tasks``, ``rss_mb`` (the peak
resident memory of this process, the one that schedules) and, where an engine has one,
``startup_seconds`` (starting a cluster or a server, not part of ``seconds``).
"""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import dataclass
from typing import Any

MARK = "BENCH-RESULT "
SCENARIOS = ("fanout", "chain", "wide", "idempotent", "cold")


@dataclass(frozen=True)
class Args:
    scenario: str
    n: int
    variant: str


def parse_args(variants: tuple[str, ...] = ("",), scenarios: tuple[str, ...] = SCENARIOS) -> Args:
    argv = sys.argv[1:]
    if len(argv) not in (2, 3) or argv[0] not in scenarios or not argv[1].isdigit():
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(scenarios)}}} N [{'|'.join(variants)}]")
    variant = argv[2] if len(argv) == 3 else variants[0]
    if variant not in variants:
        raise SystemExit(f"{sys.argv[0]}: unknown variant {variant!r}; one of {', '.join(variants)}")
    return Args(argv[0], int(argv[1]), variant)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(seconds: float, tasks: int, **extra: Any) -> None:
    result = {"seconds": seconds, "tasks": tasks, "rss_mb": peak_rss_mb(), **extra}
    print(MARK + json.dumps(result), flush=True)
