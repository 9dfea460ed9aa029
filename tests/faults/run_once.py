"""One Lambda invocation in a process of its own, as a fresh container would run it.

`python -m tests.faults.run_once 2026-11-24T12:00:00Z [WALL_CLOCK_OFFSET]` with the function's
environment set; prints the run summary as JSON. The offset (seconds added to the real clock) is
the test's simulated wall clock (`tests.support.archive.SimulatedClock`), shared with the test process.
"""

from __future__ import annotations

import json
import os
import sys
import time

from runway_archiver.local.engines import LocalLambdaContext
from runway_archiver_lambda.handlers import poller


def main() -> None:
    if len(sys.argv) > 2:
        shift = float(sys.argv[2])
        poller._poller = poller.build_poller(os.environ)
        poller._poller.wall_clock = lambda: time.time() + shift
    summary = poller.lambda_handler({"scheduled_time": sys.argv[1]}, LocalLambdaContext())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
