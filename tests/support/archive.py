"""The deployed stack as a test drives it: `Archive` (register, run the poller, work the queue, call
back, read items, events, logs and objects), the simulated wall clock, and the test times."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from runway_archiver.consumer import receive_events, subscribe_queue
from runway_archiver.local.deploy import DeployedStack
from runway_archiver.local.engines import LocalLambdaContext
from runway_archiver.local.queue import Drained, drain
from runway_archiver_lambda.clock import iso_utc

from .samples import load_event

BASE_TIME = "2026-11-24T12:00:00Z"  # when the tests' runs happen unless they say otherwise (`minutes(0)`)


def minutes_after_base(n: int) -> str:
    """The ISO time n minutes after BASE_TIME, as the Scheduler would pass it."""
    return iso_utc(datetime.fromisoformat(BASE_TIME) + timedelta(minutes=n))


def epoch(iso: str) -> float:
    moment = datetime.fromisoformat(iso)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def event_time(event: Mapping[str, Any]) -> str | None:
    """The time a poller event carries, as the handler reads it (None: it carries none)."""
    for name in ("scheduled_time", "time"):
        if event.get(name) not in (None, ""):
            return str(event[name])
    return None


@dataclass
class SimulatedClock:
    """The wall clock of a test that simulates days passing: a run at `at` happens at `at`.

    Runs trust their event's time only near the wall clock, so the tests' runs (at fixed times in
    2026-11) see a wall clock moved to their time. It still ticks: the first run at a time sees that
    time exactly, later runs at the same time see the real seconds elapsed since (leases run out).
    """

    offsets: dict[str, float] = field(default_factory=dict)
    current: str = BASE_TIME

    def offset(self, at: str) -> float:
        """Seconds to add to the real clock for the wall clock of a run at `at`."""
        self.current = at
        return self.offsets.setdefault(at, epoch(at) - time.time())

    def at(self, at: str) -> Callable[[], float]:
        shift = self.offset(at)
        return lambda: time.time() + shift

    def now(self) -> int:
        """The wall clock now, as the last run saw it (for tests that write leases themselves)."""
        return int(time.time() + self.offset(self.current))


@dataclass
class Archive:
    """The deployed stack as a user sees it: register tasks, run the poller, read the results."""

    stack: DeployedStack
    monkeypatch: pytest.MonkeyPatch
    queue_url: str
    log_stream: io.StringIO = field(default_factory=io.StringIO)
    clock: SimulatedClock = field(default_factory=SimulatedClock)

    @property
    def table(self) -> Any:
        return boto3.resource("dynamodb").Table(self.stack.table_name)

    def register(self, *task_ids: str, provider: str | None = None) -> None:
        from runway_archiver.register import register_tasks

        register_tasks(self.table, task_ids, provider)

    def item(self, task_id: str) -> dict[str, Any]:
        item: dict[str, Any] = self.table.get_item(Key={"task_id": task_id}, ConsistentRead=True)["Item"]
        return item

    def run(
        self,
        at: str | None = None,
        *,
        event: dict[str, Any] | None = None,
        remaining_seconds: float = 240.0,
        env: dict[str, str] | None = None,
        session: boto3.session.Session | None = None,
    ) -> dict[str, Any]:
        """Invoke the Lambda handler as the schedule would, in a fresh container (cold start).

        The invocation happens at `at` (wall clock); the event is the Scheduler's for that time
        unless given. Without `at`, a given event's own time is the wall clock, and an event
        without a time runs at the real time.
        """
        event = event if event is not None else {"scheduled_time": at or BASE_TIME}
        for name, value in {**self.stack.function_environment, **(env or {})}.items():
            self.monkeypatch.setenv(name, value)
        from runway_archiver_lambda.handlers import poller as poller_entry  # after the environment is set, as in Lambda

        # A new container each run; `session` lets a test hook faults into the real boto3 clients.
        poller = poller_entry.build_poller(os.environ, session)
        happens_at = at or event_time(event)
        with contextlib.suppress(ValueError):  # an unreadable event time: the handler says so
            poller.wall_clock = self.clock.at(happens_at) if happens_at else time.time
        self.monkeypatch.setattr(poller_entry, "_poller", poller)
        self.monkeypatch.setattr(poller_entry.logger.registered_handler, "stream", self.log_stream)
        result: dict[str, Any] = poller_entry.lambda_handler(
            event, LocalLambdaContext(timeout_seconds=remaining_seconds)
        )
        return result

    def work(
        self,
        *,
        remaining_seconds: float = 240.0,
        env: dict[str, str] | None = None,
        max_batches: int | None = None,
        visibility_timeout: int = 60,
        session: boto3.session.Session | None = None,
    ) -> Drained:
        """Let the worker consume the work queue as the SQS event source would (a cold container);
        `session` lets a test hook faults into the worker's boto3 clients."""
        for name, value in {**self.stack.environments["WorkerFunction"], **(env or {})}.items():
            self.monkeypatch.setenv(name, value)
        from runway_archiver_lambda.handlers import worker as worker_entry
        from runway_archiver_lambda.wiring import build_poller

        poller = build_poller(os.environ, session)
        poller.wall_clock = self.clock.at(self.clock.current)  # the workers run when the last run did
        self.monkeypatch.setattr(worker_entry, "_poller", poller)
        self.monkeypatch.setattr(worker_entry.logger.registered_handler, "stream", self.log_stream)
        return drain(
            boto3.client("sqs"),
            self.work_queue_url,
            worker_entry.lambda_handler,
            lambda: LocalLambdaContext("runway-archiver-worker", remaining_seconds),
            max_batches=max_batches,
            visibility_timeout=visibility_timeout,
        )

    @property
    def work_queue_url(self) -> str:
        return self.stack.outputs["WorkQueueUrl"]

    @property
    def callback_token(self) -> str:
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=self.stack.outputs["CallbackTokenSecretArn"])
        return secret["SecretString"]

    def callback(
        self,
        body: str | bytes,
        *,
        token: str | None = None,
        in_header: bool = False,
        env: dict[str, str] | None = None,
        base64_encoded: bool = False,
        query: dict[str, str] | None = None,
        warm: bool = False,
    ) -> dict[str, Any]:
        """POST to the callback function's URL as the provider would (the stack's token unless given),
        in a fresh container, or with `warm` in the container the last call left (as Lambda reuses one)."""
        import base64

        for name, value in {**self.stack.environments["IntakeFunction"], **(env or {})}.items():
            self.monkeypatch.setenv(name, value)
        from runway_archiver_lambda.handlers import callback as callback_entry

        if not warm:
            self.monkeypatch.setattr(callback_entry, "_callbacks", None)
        self.monkeypatch.setattr(callback_entry.logger.registered_handler, "stream", self.log_stream)
        token = self.callback_token if token is None else token
        event = load_event("callback/function-url.json")
        raw = body.encode() if isinstance(body, str) else body
        event["body"] = base64.b64encode(raw).decode() if base64_encoded else raw.decode()
        event["isBase64Encoded"] = base64_encoded
        event["queryStringParameters"] = {**({} if in_header or not token else {"token": token}), **(query or {})}
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in event["queryStringParameters"].items())
        if in_header:
            event["headers"]["x-archiver-token"] = token
        response: dict[str, Any] = callback_entry.lambda_handler(
            event, LocalLambdaContext("runway-archiver-callback", 10)
        )
        return response

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines the handler wrote so far."""
        return [json.loads(line) for line in self.log_stream.getvalue().splitlines() if line.startswith("{")]

    def events(self) -> list[dict[str, Any]]:
        """Every CloudEvent delivered so far to an SQS queue subscribed to the topic (raw delivery)."""
        return receive_events(boto3.client("sqs"), self.queue_url)

    def object(self, key: str) -> dict[str, Any]:
        return dict(boto3.client("s3").head_object(Bucket=self.stack.bucket_name, Key=key))

    def object_bytes(self, key: str) -> bytes:
        body: bytes = boto3.client("s3").get_object(Bucket=self.stack.bucket_name, Key=key)["Body"].read()
        return body


def subscribed_archive(stack: DeployedStack, monkeypatch: pytest.MonkeyPatch) -> Archive:
    """The stack with an SQS queue subscribed to its topic (raw delivery), as a consumer would have."""
    queue_url = subscribe_queue(boto3.client("sqs"), boto3.client("sns"), stack.topic_arn, "completion-events")
    return Archive(stack, monkeypatch, queue_url)
