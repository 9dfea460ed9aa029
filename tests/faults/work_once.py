"""A worker instance in a process of its own: drains the work queue as its SQS trigger would.

`python -m tests.faults.work_once QUEUE_URL STOP_FILE [WALL_CLOCK_OFFSET]` with the worker's
environment set; keeps receiving until STOP_FILE exists and the queue is empty; prints what it
drained as JSON. The offset is the test's simulated wall clock, as in `tests.faults.run_once`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import boto3

from runway_archiver.local.engines import LocalLambdaContext
from runway_archiver.local.queue import Drained, drain
from runway_archiver_lambda.handlers import worker
from runway_archiver_lambda.wiring import build_poller


def main() -> None:
    queue_url, stop_file = sys.argv[1], Path(sys.argv[2])
    if len(sys.argv) > 3:
        shift = float(sys.argv[3])
        worker._poller = build_poller(os.environ)
        worker._poller.wall_clock = lambda: time.time() + shift
    sqs = boto3.client("sqs")
    total = Drained()
    while True:
        stopping = stop_file.exists()  # read first: a message sent before the stop is then still seen
        drained = drain(sqs, queue_url, worker.lambda_handler, lambda: LocalLambdaContext("runway-archiver-worker"))
        total.batches += drained.batches
        total.records += drained.records
        total.returned += drained.returned
        if stopping and not drained.records:
            break
        time.sleep(0.05)
    print(json.dumps(asdict(total)))


if __name__ == "__main__":
    main()
