"""Callback to event: how soon a finished task is announced when the provider calls back, versus polling.

Everything real and local: moto_server in its own process with template.yaml deployed, the feed
emulator (with `--latency` per feed call), the callback function behind a function URL on 127.0.0.1, the
worker fed from the work queue as its SQS trigger would, and an SQS queue subscribed to the topic.

    python -m bench.callback_latency [--tasks 10] [--latency 0.1]

Callback path, per task: the provider finishes and POSTs its callback (t0); the callback function checks it
and queues a hint; the worker re-reads the feed, copies the media, records and publishes; the event
arrives on the subscribed queue (t1). Polling path: the provider finishes right after a scheduled
run; the next run (one interval later, in the fast-poll phase) archives it. Its figure is the
interval plus the measured duration of that run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

import boto3

from runway_archiver.consumer import subscribe_queue, wait_for_event
from runway_archiver.local.deploy import deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import SILENT, LocalLambdaContext, MotoServer, patched_environ
from runway_archiver.local.function_url import LocalFunctionUrl
from runway_archiver.local.queue import drain
from runway_archiver_lambda.tasks import TaskStore

from .harness import shared_dynamodb

SCHEDULE_INTERVAL_SECONDS = 60.0  # template default: rate(1 minute)
KEY = "bench-key"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.1, help="feed API latency per call, seconds")
    args = parser.parse_args(argv)
    callback, polled_run = measure(args.tasks, args.latency)
    polling = SCHEDULE_INTERVAL_SECONDS + polled_run
    print(
        f"callback -> event (median of {args.tasks}, feed latency {args.latency * 1000:.0f} ms): "
        f"{statistics.median(callback):.3f} s  (max {max(callback):.3f} s)"
    )
    print(
        f"polling  -> event (next tick in the fast-poll phase: interval {SCHEDULE_INTERVAL_SECONDS:.0f} s "
        f"+ run {polled_run:.3f} s): {polling:.3f} s worst, {polling - SCHEDULE_INTERVAL_SECONDS / 2:.3f} s on average"
    )
    print(f"ratio callback / polling (worst): {statistics.median(callback) / polling:.4f}")
    return 0


def measure(tasks: int, latency: float) -> tuple[list[float], float]:
    with (
        MotoServer(dynamodb=shared_dynamodb()) as moto,
        FeedEmulator(api_key=KEY, latency=latency) as feed,
        patched_environ({**moto.environment(), "POWERTOOLS_TRACE_DISABLED": "true"}),
    ):
        session = boto3.session.Session()
        stack = deploy(
            session,
            api_key=KEY,
            parameters=feed.stack_parameters(),
        )
        sqs = session.client("sqs")
        events_queue = subscribe_queue(sqs, session.client("sns"), stack.topic_arn, "bench-events")
        token = session.client("secretsmanager").get_secret_value(SecretId=stack.outputs["CallbackTokenSecretArn"])[
            "SecretString"
        ]
        store = TaskStore(session.resource("dynamodb").Table(stack.table_name))
        with patched_environ({**stack.every_environment, **SILENT}):
            from runway_archiver_lambda.handlers import callback, poller, worker

            task_ids = [f"latency-{n:03d}" for n in range(tasks)]
            for task_id in task_ids:
                feed.add_task(task_id, " ".join(["1"] * 50 + ["3"]))
                store.register(task_id)
            poller.lambda_handler({}, LocalLambdaContext())  # first poll: every task running

            callback_seconds: list[float] = []
            with LocalFunctionUrl(callback.lambda_handler, lambda: LocalLambdaContext("callback", 10)) as callback_url:
                for task_id in task_ids:
                    started = time.perf_counter()
                    status, _ = feed.call_back(task_id, f"{callback_url.url}?token={token}")
                    assert status == 202, status
                    drain(
                        sqs, stack.outputs["WorkQueueUrl"], worker.lambda_handler, lambda: LocalLambdaContext("worker")
                    )
                    wait_for_event(sqs, events_queue, task_id)
                    callback_seconds.append(time.perf_counter() - started)

            # Polling path: a task that finished since the last run is archived by the next one.
            feed.add_task("latency-polled", "1 3")
            store.register("latency-polled")
            poller.lambda_handler({}, LocalLambdaContext())
            started = time.perf_counter()
            poller.lambda_handler({"scheduled_time": _minutes_from_now(1)}, LocalLambdaContext())
            wait_for_event(sqs, events_queue, "latency-polled")
            polled_run = time.perf_counter() - started
    return callback_seconds, polled_run


def _minutes_from_now(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


if __name__ == "__main__":
    raise SystemExit(main())
