"""Conveyor beside a plain process pool only: scenarios a (fan-out) and b (chain) of the harness.

    .venv/bin/python bench/embedded.py [--reps N] [--only fanout|chain] [--fanout N] [--chain N]

A quick loop while working on Conveyor's speed: it needs no peers' virtual environment. The
full comparison, with Luigi, Dask and Prefect, is ``make bench`` (bench/harness.py); this takes
the same options and writes its results to the same place (bench/results/latest.json).
"""

from __future__ import annotations

import sys

from harness import main

if __name__ == "__main__":
    raise SystemExit(main(["--engines", "conveyor,pool", "--only", "a,b", *sys.argv[1:]]))
