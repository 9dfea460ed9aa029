"""One Lambda invocation in a process of its own, as a fresh container would run it.

`python -m tests.faults.run_once 2026-11-24T12:00:00Z` with the function's environment set;
prints the run summary as JSON.
"""

from __future__ import annotations

import json
import sys

from archiver import handler
from runway_archiver.local_aws import LocalLambdaContext


def main() -> None:
    summary = handler.lambda_handler({"scheduled_time": sys.argv[1]}, LocalLambdaContext())
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
