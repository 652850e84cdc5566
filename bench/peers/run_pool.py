"""The baseline: a plain ``concurrent.futures.ProcessPoolExecutor`` with 2 workers, no bookkeeping.

    python bench/peers/run_pool.py {fanout,chain,wide,cold} N

Only the standard library, so the harness runs it with the project's Python. The time runs from
creating the pool to its shutdown. fanout, wide: submit N no-op calls, wait for all, then one
join call; chain: ``submit(...).result()`` N times, one after the other; cold: one call.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, wait

from common import emit, parse_args

WORKERS = 2


def noop(i: int) -> None:
    """The no-op task."""


def main() -> None:
    args = parse_args()
    n = 1 if args.scenario == "cold" else args.n
    t0 = time.perf_counter()
    with ProcessPoolExecutor(WORKERS) as pool:
        if args.scenario == "chain":
            for i in range(n):
                pool.submit(noop, i).result()
            tasks = n
        else:
            wait([pool.submit(noop, i) for i in range(n)])
            pool.submit(noop, -1).result()
            tasks = n + 1
    emit(time.perf_counter() - t0, tasks)


if __name__ == "__main__":
    main()
