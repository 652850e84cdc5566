"""``python3 -m conveyor.executors.runjob``: the runner command a batch job executes (see
``conveyor.executors.command``). Nothing imports this module, so ``-m`` runs it fresh."""

from __future__ import annotations

import sys

from conveyor.executors.command import main

if __name__ == "__main__":
    sys.exit(main())
