"""Lambda entry point: the scheduled event in, one poller run, a summary out."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import urllib3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from .apikey import SecretApiKey
from .config import Settings
from .events import EventPublisher
from .feed import FeedClient
from .media import AddressGuard, MediaArchiver
from .poller import Poller, RunSummary
from .tasks import TaskStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()
metrics = Metrics()
tracer = Tracer()

_COUNTS = {
    "TasksPolled": "polled",
    "TasksArchived": "archived",
    "TasksFailed": "failed",
    "TasksExpired": "expired",
    "TasksStillPending": "still_pending",
    "PollErrors": "poll_errors",
    "ArchiveErrors": "archive_errors",
    "EventsPublished": "announced",
    "PublishErrors": "publish_errors",
    "TaskErrors": "task_errors",
    "ClaimConflicts": "claim_conflicts",
    "TasksLeftForNextRun": "left_for_next_run",
    "DiscoveryItemsRead": "discovery_items_read",
}
_poller: Poller | None = None


def build_poller(environ: Mapping[str, str], session: boto3.session.Session | None = None) -> Poller:
    """Wire the poller to real AWS clients and HTTP pools (boto3 honours AWS_ENDPOINT_URL)."""
    settings = Settings.from_environ(environ)
    aws_config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=5,
        read_timeout=30,
        max_pool_connections=max(10, settings.poll_concurrency + 4 * settings.archive_concurrency),
    )
    session = session or boto3.session.Session()
    api_key = SecretApiKey(session.client("secretsmanager", config=aws_config), settings.api_key_secret_id)
    timeout = urllib3.Timeout(connect=settings.connect_timeout_seconds, read=settings.read_timeout_seconds)
    feed = FeedClient(
        settings.api_base_url,
        api_key,
        api_version=settings.api_version,
        timeout=timeout,
        http=urllib3.PoolManager(maxsize=settings.poll_concurrency, block=True),
    )
    media = MediaArchiver(
        session.client("s3", config=aws_config),
        settings.bucket_name,
        settings.key_prefix,
        AddressGuard(settings.allowed_private_networks),
        max_bytes=settings.max_media_bytes,
        timeout=timeout,
    )
    store = TaskStore(session.resource("dynamodb", config=aws_config).Table(settings.table_name))
    publisher = EventPublisher(session.client("sns", config=aws_config), settings.topic_arn)
    return Poller(settings, store, feed, media, publisher)


def run_time(event: Mapping[str, Any] | None) -> datetime:
    """'Now' for this run: the scheduled time the event carries, else the wall clock."""
    for name in ("scheduled_time", "time"):
        raw = (event or {}).get(name)
        if raw in (None, ""):
            continue
        try:
            moment = datetime.fromisoformat(str(raw))
        except ValueError as exc:
            raise ValueError(f"event field {name!r} is not an ISO 8601 time: {str(raw)[:40]!r}") from exc
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _poller  # noqa: PLW0603 - built once per container, reused by warm invocations
    now = run_time(event)
    if _poller is None:
        _poller = build_poller(os.environ)
    summary = _poller.run(now, remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000)
    _emit_metrics(summary)
    logger.info("run finished", extra={"summary": summary.as_dict()})
    return summary.as_dict()


def _emit_metrics(summary: RunSummary) -> None:
    counts = summary.as_dict()
    for metric, field in _COUNTS.items():
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=counts[field])
    metrics.add_metric(name="BytesArchived", unit=MetricUnit.Bytes, value=summary.bytes_archived)
    # Every pending task is claimed at least every MAX_POLL_INTERVAL_SECONDS, so the maximum of
    # this over that window is the age of the oldest pending task: the "tasks stuck" signal.
    metrics.add_metric(
        name="OldestPendingTaskAgeSeconds", unit=MetricUnit.Seconds, value=summary.oldest_claimed_age_seconds
    )
