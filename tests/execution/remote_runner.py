"""A runner on "another machine": it gets a job, the execution API's address and a start token,
never a store URL, and does what an engine's worker does (``executors.remote.run_remote``):
begin, run the attempt, end, all through ``ApiRecorder``.

    python remote_runner.py '{"job": {...}, "api": "http://...", "token": "cva1...."}'

Prints ``OUTCOME <status> <error>`` last; exits 3 when the attempt may not start.
"""

from __future__ import annotations

import json
import os
import sys

from conveyor.execution.client import ApiRecorder
from conveyor.runner import Job, run_attempt


def main() -> int:
    assert "CONVEYOR_DB" not in os.environ, "a remote runner must not see the store's URL"
    ask = json.loads(sys.argv[1])
    job = Job(**ask["job"])
    os.chdir(job.workdir)
    rec = ApiRecorder(ask["api"], ask["token"], interval=float(ask.get("interval", 0.2)),
                      patience=float(ask.get("patience", 60)))  # fmt: skip
    begun = rec.begin(job)
    if begun is False:
        print("OUTCOME stale", flush=True)
        return 3
    out = run_attempt(job, None if begun is True else (rec, begun))
    rec.end(job, out)
    print(f"OUTCOME {out.status} {out.error or ''}".strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
