"""`runway-archiver run` against the embedded AWS, and `runway-archiver local` to keep one up.

moto cannot run a Lambda function without Docker, so against an emulated AWS (`AWS_ENDPOINT_URL`
set) a run is the deployed function's own code, in this process, with the environment the
deploy gave the function (read back from Lambda's API), then the worker draining the work queue
as its SQS trigger would.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .deploy import deploy
from .engines import QUIET, LocalLambdaContext, MotoServer, patched_environ
from .queue import drain

if TYPE_CHECKING:
    from collections.abc import Iterator

    import boto3

    from ..stack.archive import Archive, FunctionConfiguration

LOCAL_STACK = "runway-archiver-local"
LOCAL_RUNWAY_STACK = "runway-archiver-local-runway"  # the same template with Provider=runway
LOCAL_API_KEY = "local-key-0123456789"
# What the local feed answers for any task id it is asked about: queued, running twice, succeeded.
LOCAL_SCRIPT = "0 1 1 3"
# Counts a worker's "batch finished" summary adds to the run's (the rest describe the poller's run).
WORKER_COUNTS = ("polled", "still_pending", "archived", "failed", "expired", "announced", "poll_errors")


class FunctionOutput:
    """What a function writes while it runs here (JSON log lines, and any EMF metric blobs
    Powertools prints on stdout), kept off the terminal and delivered, as Lambda delivers a
    function's output, to its CloudWatch Logs group."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()

    @contextlib.contextmanager
    def capture(self, entry: Any) -> Iterator[None]:
        """While the block runs, `entry`'s logger and this process's stdout write here."""
        handler = entry.logger.registered_handler
        saved = handler.stream
        handler.stream = self._buffer
        try:
            with contextlib.redirect_stdout(self._buffer):
                yield
        finally:
            handler.stream = saved

    def lines(self) -> list[str]:
        return [line for line in self._buffer.getvalue().splitlines() if line.strip()]

    def logged(self, message: str) -> list[dict[str, Any]]:
        """The JSON log lines with this message."""
        found = []
        for line in self.lines():
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and parsed.get("message") == message:
                found.append(parsed)
        return found

    def deliver(self, session: boto3.session.Session, log_group: str, stream: str) -> None:
        """Put the lines into the log group (created if the local deploy has none), oldest first."""
        lines = self.lines()
        if not lines:
            return
        logs = session.client("logs")
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=log_group)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=log_group, logStreamName=stream)
        events: list[dict[str, Any]] = []
        moment = int(time.time() * 1000)
        for line in lines:
            moment = max(moment if events else 0, _logged_at(line) or moment)  # in order, as CloudWatch wants
            events.append({"timestamp": moment, "message": line})
        for start in range(0, len(events), 1000):
            logs.put_log_events(logGroupName=log_group, logStreamName=stream, logEvents=events[start : start + 1000])


def _logged_at(line: str) -> int | None:
    """A Powertools log line's own time ("2026-11-27 18:38:41,123+0000"), in epoch milliseconds."""
    try:
        stamp = json.loads(line).get("timestamp")
        return int(datetime.strptime(str(stamp), "%Y-%m-%d %H:%M:%S,%f%z").timestamp() * 1000)
    except (ValueError, AttributeError):
        return None


def run_in_process(
    archive: Archive, session: boto3.session.Session, scheduled_time: str, poller: FunctionConfiguration
) -> dict[str, Any]:
    """One poller run (configured as `poller`) and one drain of the work queue, in this process, as deployed.

    The functions' output goes to their log groups in the emulated CloudWatch Logs, as on AWS; the
    summary adds what the workers did under `workers` (the work requests they took, and their counts).
    """
    resources = archive.resources
    log_level = {"POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "INFO")}
    timeout = poller.timeout_seconds
    stream = f"local-run/{time.strftime('%Y/%m/%d')}/{time.time_ns()}"
    output = FunctionOutput()
    with patched_environ({**poller.environment, **QUIET, **log_level}):
        from runway_archiver_lambda.handlers import poller as poller_entry

        with output.capture(poller_entry):
            summary: dict[str, Any] = poller_entry.lambda_handler(
                {"scheduled_time": scheduled_time}, LocalLambdaContext(resources.poller_function, timeout)
            )
    output.deliver(session, poller.log_group or f"/aws/lambda/{resources.poller_function}", stream)
    if resources.worker_function and resources.work_queue_url:
        worker = archive.function_configuration(resources.worker_function)
        worker_output = FunctionOutput()
        with patched_environ({**worker.environment, **QUIET, **log_level}):
            from runway_archiver_lambda.handlers import worker as worker_entry

            with worker_output.capture(worker_entry):
                drained = drain(
                    session.client("sqs"),
                    resources.work_queue_url,
                    worker_entry.lambda_handler,
                    lambda: LocalLambdaContext(str(resources.worker_function), worker.timeout_seconds),
                )
        worker_output.deliver(session, worker.log_group, stream)
        summary["worker_requests"] = drained.records
        totals = dict.fromkeys(WORKER_COUNTS, 0)
        for line in worker_output.logged("batch finished"):
            for name in WORKER_COUNTS:
                totals[name] += int(line.get("summary", {}).get(name, 0))
        summary["workers"] = {"requests": drained.records, "batches": drained.batches, **totals}
    return summary


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:port (a second `make local`, say)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def cli_command() -> str:
    """How to call the CLI from any shell: the script beside this interpreter (.venv/bin), if there is one."""
    script = Path(sys.executable).parent / "runway-archiver"
    return shlex.quote(str(script)) if script.is_file() else f"{shlex.quote(sys.executable)} -m runway_archiver.cli"


def serve_local(port: int, feed_port: int, dynamodb_port: int | None = None) -> int:
    """Keep an embedded AWS with the stack deployed, and a feed emulator, up until interrupted."""
    import boto3

    from .emulator import FeedEmulator

    ports = [("emulated AWS", port, "--port"), ("feed emulator", feed_port, "--feed-port")]
    ports += [("DynamoDB Local", dynamodb_port, "--dynamodb-port")] if dynamodb_port else []
    for what, number, option in ports:
        if port_in_use(number):
            print(
                f"runway-archiver: port {number} (for the {what}) is in use, maybe by another `make local`: "
                f"stop that one, or pass {option} with a free port",
                file=sys.stderr,
            )
            return 1
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
            session,
            stack_name=LOCAL_RUNWAY_STACK,
            api_key=LOCAL_API_KEY,  # the emulator takes this key on Runway's API as on the gateway
            gateway_api_key=LOCAL_API_KEY,  # GatewayApiKeySecret: every other family, through the gateway
            parameters=feed.stack_parameters("runway"),
        )
        cli = cli_command()
        print(f"emulated AWS at {moto.endpoint}, stack {stack.stack_name} deployed; feed emulator at {feed.base_url}")
        print(f"table {stack.table_name}, bucket {stack.bucket_name}")
        dynamodb = moto.dynamodb.endpoint if moto.dynamodb else None
        print(f"DynamoDB: {moto.dynamodb_engine}" + (f" at {dynamodb}" if dynamodb else ""))
        print("every task id the feed is asked about is queued, then running, then succeeds (4 polls, 30 s apart),")
        print("answered in today's task envelope; stack", runway.stack_name, "polls the emulated Runway API instead.")
        print("In another terminal:\n")
        print(f"  export AWS_ENDPOINT_URL={moto.endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing")
        if dynamodb:
            print(f"  export AWS_ENDPOINT_URL_DYNAMODB={dynamodb}")
        print(f"  export AWS_DEFAULT_REGION=us-east-1 RUNWAY_ARCHIVER_STACK={stack.stack_name}")
        print(f"  export TABLE={stack.table_name}   # for the README's aws dynamodb put-item")
        print(f"  {cli} track my-first-task && {cli} run && {cli} list")
        on_runway = f"--stack {runway.stack_name}"
        print(f"  {cli} track owl {on_runway} && {cli} run {on_runway}")
        print(f"  {cli} status")
        print(f"  {cli} browse        # the archive in your browser, on 127.0.0.1\n")
        print("Ctrl-C stops everything (the emulated AWS keeps nothing).", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
