"""Wiring of the Lambda entry points to real AWS clients and HTTP pools: the poller's (poller and
worker functions) and the callback function's."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import boto3
import urllib3
from botocore.config import Config

from .address_guard import AddressGuard
from .apikey import CachedSecret, SecretApiKey
from .callbacks import Callbacks
from .config import CallbackSettings, Settings
from .events import EventPublisher
from .feed import FeedClient
from .media import MediaArchiver
from .poller import Poller
from .tasks import TaskStore
from .workqueue import WorkQueue

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping


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
    secretsmanager = session.client("secretsmanager", config=aws_config)
    api_key = SecretApiKey(secretsmanager, settings.api_key_secret_id)
    # Provider=runway: the gateway's key, for every family but Runway's, has a secret of its own.
    gateway_key = (
        SecretApiKey(
            secretsmanager,
            settings.gateway_key_secret_id,
            what="the gateway key secret (GatewayApiKeySecret)",
            key_name="the CometAPI key",
        )
        if settings.gateway_key_secret_id
        else None
    )
    timeout = urllib3.Timeout(connect=settings.connect_timeout_seconds, read=settings.read_timeout_seconds)
    feed = FeedClient(
        settings.feed_base_url,
        api_key,
        provider=settings.provider,
        gateway_base_url=settings.api_base_url,
        gateway_key=gateway_key,
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
    work_queue = (
        WorkQueue(session.client("sqs", config=aws_config), settings.work_queue_url)
        if settings.work_queue_url
        else None
    )
    return Poller(settings, store, feed, media, publisher, work_queue=work_queue)


def build_callbacks(
    environ: Mapping[str, str],
    session: boto3.session.Session | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Callbacks:
    """Wire the callback function to its table, work queue and token secret (re-read on `clock`,
    every `CALLBACK_TOKEN_TTL_SECONDS`)."""
    settings = CallbackSettings.from_environ(environ)
    session = session or boto3.session.Session()
    # The sender waits on us: fail fast rather than retry long.
    aws_config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)
    return Callbacks(
        settings,
        TaskStore(session.resource("dynamodb", config=aws_config).Table(settings.table_name)),
        WorkQueue(session.client("sqs", config=aws_config), settings.work_queue_url),
        CachedSecret(
            session.client("secretsmanager", config=aws_config),
            settings.token_secret_id,
            what="the callback token",
            max_age_seconds=settings.token_ttl_seconds,
            clock=clock,
        ),
    )
