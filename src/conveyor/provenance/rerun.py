"""The re-run of ``conveyor reproduce``, in a fresh interpreter in the scratch checkout:
``python -m conveyor.provenance.rerun TARGET PARAMS_JSON``. The parameters are the run's as
stored (JSON), read back with the pipeline's own types. Exit 0: the run succeeded; 1: it did
not; 2: it could not start (one line)."""

from __future__ import annotations

import json
import sys

from conveyor import params as P
from conveyor.errors import ConveyorError


def main(argv: list[str]) -> int:
    from conveyor import engine
    from conveyor.loader import load_pipeline

    target, params = argv
    try:
        pipe = load_pipeline(target)
        result = engine.run(target, P.from_json(pipe.params, json.loads(params)), new=True)
    except ConveyorError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(f"run {result.run_id}: {result.state}")
    return 0 if result.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
