"""Shared fixtures: emulated AWS (DynamoDB Local + moto) with template.yaml deployed, and the feed emulator."""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
import urllib3
from moto import mock_aws
from moto.core.config import default_user_config

from runway_archiver.local.deploy import DeployedStack, deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import FAKE_CREDENTIALS, DynamoDBLocal, uses_dynamodb_local
from tests.support.archive import Archive, minutes_after_base, subscribed_archive
from tests.support.policy_guard_plugin import (  # noqa: F401 - every AWS call judged as AWS would
    aws_refusals_fail_the_test,
    policy_guard_in_subprocesses,
)
from tests.support.samples import API_KEY, RUNWAY_API_KEY


def _loopback_only(event: str, args: tuple[Any, ...]) -> None:
    """A safety net under the address guard: this test process never connects off loopback."""
    if event != "socket.connect":
        return
    sock, address = args
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
    except ValueError:
        return
    if not ip.is_loopback:
        raise ConnectionRefusedError(f"the tests may connect only to loopback, not to {address[0]}")


sys.addaudithook(_loopback_only)


@pytest.fixture(scope="session", autouse=True)
def one_model_loader_per_process() -> Iterator[None]:
    """Every botocore session of this test process reads the services' models (JSON files shipped
    with botocore) through one loader, which keeps what it has parsed.

    The handlers make a fresh boto3 session per invocation, as a cold start does, and the tests
    invoke them thousands of times: each fresh session re-parsing the same files was most of a
    client's cost (about 25 ms of 30, some 0.2 s per invocation). The models are read-only data,
    as they already are between the clients of one session; every session still makes its own
    clients, credentials, configuration and endpoints.
    """
    loaders: dict[str | None, botocore.loaders.Loader] = {}
    create_loader = botocore.loaders.create_loader

    def shared_loader(search_path_string: str | None = None) -> botocore.loaders.Loader:
        if search_path_string not in loaders:
            loaders[search_path_string] = create_loader(search_path_string)
        return loaders[search_path_string]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared_loader)
        yield


# The feed client's retries wait urllib3's exponential backoff (none, then 1 s, 2 s, 4 s, with jitter):
# some 7 s of sleep in every test whose feed fails past a retry or two. The tests judge that the
# retries happen and how many (the emulator counts the polls), not the waiting.
BACKOFF_IN_TESTS = 0.05


@pytest.fixture(autouse=True)
def feed_retries_wait_a_twentieth(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib3's backoff schedule, scaled by BACKOFF_IN_TESTS (in this process; subprocesses wait in
    full); `@pytest.mark.real_backoff` keeps it whole (tests/unit/test_rules.py pins the schedule)."""
    if request.node.get_closest_marker("real_backoff"):
        return
    full = urllib3.Retry.get_backoff_time
    monkeypatch.setattr(urllib3.Retry, "get_backoff_time", lambda retry: full(retry) * BACKOFF_IN_TESTS)


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and no endpoint override: nothing here may reach real AWS."""
    for name, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "RunwayArchiverTests")


@pytest.fixture
def feed() -> Iterator[FeedEmulator]:
    with FeedEmulator(api_key=API_KEY, runway_api_key=RUNWAY_API_KEY) as emulator:
        yield emulator


@pytest.fixture
def allowed_networks() -> str:
    """The stack's AllowedPrivateNetworks: the emulated CDN lives on 127.0.0.1. Override to change."""
    return "127.0.0.1/32"


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal | None]:
    """One DynamoDB Local for the session (a JVM starts in seconds); None with RUNWAY_ARCHIVER_DYNAMODB=moto."""
    if not uses_dynamodb_local():
        yield None
        return
    with DynamoDBLocal() as engine:
        yield engine


@pytest.fixture
def provider() -> str:
    """The stack's Provider parameter; parametrize it as "runway" to poll the emulated Runway API."""
    return "cometapi"


@pytest.fixture
def gateway_api_key() -> str | None:
    """What a Provider=runway stack's GatewayApiKeySecret holds (None: no value put); parametrize to change."""
    return API_KEY


@pytest.fixture
def extra_parameters() -> dict[str, str]:
    """More template parameters for the stack; parametrize it to deploy another configuration."""
    return {}


@pytest.fixture
def stack(
    feed: FeedEmulator,
    allowed_networks: str,
    provider: str,
    gateway_api_key: str | None,
    extra_parameters: dict[str, str],
    dynamodb_local: DynamoDBLocal | None,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[DeployedStack]:
    """template.yaml deployed into the embedded AWS (DynamoDB Local, moto in-process for the rest),
    configured for the feed emulator on loopback."""
    config: Any = {"core": {**default_user_config["core"], "passthrough": {"urls": [], "services": []}}}
    if dynamodb_local is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint)
        # mock_aws answers only URLs of AWS's own domains; said outright, DynamoDB Local's is not its.
        config["core"]["passthrough"]["urls"].append(re.escape(dynamodb_local.endpoint))
    with mock_aws(config=config):
        deployed = deploy(
            boto3.session.Session(),
            # ApiKeySecret holds the Provider's key: Runway's with Provider=runway.
            api_key=RUNWAY_API_KEY if provider == "runway" else API_KEY,
            gateway_api_key=gateway_api_key,
            parameters={
                **feed.stack_parameters(provider),
                "AllowedPrivateNetworks": allowed_networks,
                **extra_parameters,
            },
        )
        yield deployed
    if dynamodb_local is not None:  # moto forgets its resources with the mock; DynamoDB Local is shared
        dynamodb_local.client().delete_table(TableName=deployed.table_name)


@pytest.fixture
def archive(stack: DeployedStack, monkeypatch: pytest.MonkeyPatch) -> Archive:
    return subscribed_archive(stack, monkeypatch)


@pytest.fixture
def minutes() -> Callable[[int], str]:
    """ISO times n minutes after the base time the tests use, as the Scheduler would pass them."""
    return minutes_after_base
