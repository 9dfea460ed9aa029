"""`runway-archiver run` against the embedded AWS, and `runway-archiver local` to keep one up.

moto cannot run a Lambda function without Docker, so against an emulated AWS (`AWS_ENDPOINT_URL`
set) a run is the deployed function's own code, in this process, with the environment the
deploy gave the function (read back from Lambda's API), then the worker draining the work queue
as its SQS trigger would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

from .local_aws import LocalLambdaContext, MotoServer, deploy, patched_environ
from .local_queue import drain

if TYPE_CHECKING:
    import boto3

    from .operator import Archive, FunctionConfiguration

QUIET = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true"}
LOCAL_STACK = "runway-archiver-local"
LOCAL_RUNWAY_STACK = "runway-archiver-local-runway"  # the same template with Provider=runway
LOCAL_API_KEY = "local-key-0123456789"
# What the local feed answers for any task id it is asked about: queued, running twice, succeeded.
LOCAL_SCRIPT = "0 1 1 3"


def run_in_process(
    archive: Archive, session: boto3.session.Session, scheduled_time: str, poller: FunctionConfiguration
) -> dict[str, Any]:
    """One poller run (configured as `poller`) and one drain of the work queue, in this process, as deployed."""
    resources = archive.resources
    log_level = {"POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING")}
    timeout = poller.timeout_seconds
    with patched_environ({**poller.environment, **QUIET, **log_level}):
        from archiver import handler

        handler.logger.registered_handler.stream = sys.stderr  # type: ignore[attr-defined] # stdout is the CLI's
        summary: dict[str, Any] = handler.lambda_handler(
            {"scheduled_time": scheduled_time}, LocalLambdaContext(resources.poller_function, timeout)
        )
    if resources.worker_function and resources.work_queue_url:
        worker = archive.function_configuration(resources.worker_function)
        with patched_environ({**worker.environment, **QUIET, **log_level}):
            from archiver import worker as worker_entry

            worker_entry.logger.registered_handler.stream = sys.stderr  # type: ignore[attr-defined]
            drained = drain(
                session.client("sqs"),
                resources.work_queue_url,
                worker_entry.lambda_handler,
                lambda: LocalLambdaContext(str(resources.worker_function), worker.timeout_seconds),
            )
        summary["worker_requests"] = drained.records
    return summary


def serve_local(port: int, feed_port: int, dynamodb_port: int | None = None) -> int:
    """Keep an embedded AWS with the stack deployed, and a feed emulator, up until interrupted."""
    import boto3

    from .emulator import FeedEmulator

    with (
        MotoServer(port, dynamodb_port=dynamodb_port) as moto,
        FeedEmulator(
            api_key=LOCAL_API_KEY, port=feed_port, default_script=LOCAL_SCRIPT, default_dialect="task-envelope"
        ) as feed,
        patched_environ(moto.environment()),
    ):
        session = boto3.session.Session()
        stack = deploy(session, stack_name=LOCAL_STACK, api_key=LOCAL_API_KEY, parameters=feed.stack_parameters())
        runway = deploy(
            session, stack_name=LOCAL_RUNWAY_STACK, api_key=LOCAL_API_KEY, parameters=feed.stack_parameters("runway")
        )
        print(f"emulated AWS at {moto.endpoint}, stack {stack.stack_name} deployed; feed emulator at {feed.base_url}")
        dynamodb = moto.dynamodb.endpoint if moto.dynamodb else None
        print(f"DynamoDB: {moto.dynamodb_engine}" + (f" at {dynamodb}" if dynamodb else ""))
        print("every task id the feed is asked about is queued, then running, then succeeds (4 polls),")
        print("answered in today's task envelope; stack", runway.stack_name, "polls the emulated Runway API instead.")
        print("In another terminal:\n")
        print(f"  export AWS_ENDPOINT_URL={moto.endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing")
        if dynamodb:
            print(f"  export AWS_ENDPOINT_URL_DYNAMODB={dynamodb}")
        print(f"  export AWS_DEFAULT_REGION=us-east-1 RUNWAY_ARCHIVER_STACK={stack.stack_name}")
        print("  runway-archiver track my-first-task && runway-archiver run && runway-archiver list")
        on_runway = f"--stack {runway.stack_name}"
        print(f"  runway-archiver track owl {on_runway} && runway-archiver run {on_runway}\n")
        print("Ctrl-C stops everything (the emulated AWS keeps nothing).", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
