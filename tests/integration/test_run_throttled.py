"""`runway-archiver run` against a poller whose reserved concurrency is taken .

moto never throttles an invocation, so Lambda's answer (HTTP 429, TooManyRequestsException, with
the Reason Lambda documents for reserved concurrency) is injected into the real boto3 client
through botocore's event hooks, as the fault suite injects AWS faults; the invocation that gets
through is served by moto's Lambda (its Docker-free backend, which answers with the event it got).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from moto import mock_aws

from runway_archiver.stack.archive import THROTTLE_PAUSES, Archive, OperatorError, StackResources


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _throttled(request: Any, **_: Any) -> AWSResponse:
    body = {
        "Type": "User",
        "message": "Rate Exceeded.",
        "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded",
    }
    headers: Any = HeadersDict({"x-amzn-ErrorType": "TooManyRequestsException", "Content-Type": "application/json"})
    return AWSResponse(request.url, 429, headers, _Body(json.dumps(body).encode()))


@pytest.fixture
def poller() -> Iterator[tuple[Archive, boto3.session.Session, list[dict[str, Any]]]]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        session = boto3.session.Session()
        role = session.client("iam").create_role(RoleName="poller", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        zipped = io.BytesIO()
        import zipfile

        with zipfile.ZipFile(zipped, "w") as archive:
            archive.writestr("handler.py", "def lambda_handler(event, context):\n    return {}\n")
        session.client("lambda").create_function(
            FunctionName="the-poller",
            Runtime="python3.13",
            Role=role,
            Handler="handler.lambda_handler",
            Code={"ZipFile": zipped.getvalue()},
        )
        invocations: list[dict[str, Any]] = []
        session.events.register("provide-client-params.lambda.Invoke", lambda params, **_: invocations.append(params))
        resources = StackResources("s", "table", "bucket", "arn:aws:sns:us-east-1:123456789012:t", "the-poller")
        yield Archive(session, "table", resources), session, invocations


def test_a_throttled_run_is_tried_again_after_a_pause_saying_why(
    poller: tuple[Archive, boto3.session.Session, list[dict[str, Any]]],
) -> None:
    archive, session, invocations = poller
    throttled: list[str] = []

    def throttle_first_two(request: Any, **_: Any) -> AWSResponse | None:
        if len(throttled) < 2:
            throttled.append(request.url)
            return _throttled(request)
        return None  # let moto answer

    session.events.register("before-send.lambda.Invoke", throttle_first_two)  # type: ignore[arg-type]
    said: list[str] = []
    slept: list[float] = []

    summary = archive.invoke_poller("2026-11-27T12:00:00Z", on_throttle=said.append, sleep=slept.append)

    assert summary == {"scheduled_time": "2026-11-27T12:00:00Z"}  # the run's answer, from moto's echo
    assert slept == list(THROTTLE_PAUSES[:2])
    assert said[0] == (
        "the poller is throttled (ReservedFunctionConcurrentInvocationLimitExceeded): its reserved concurrency is "
        "taken, most likely by scheduled runs; trying again in 5 s (attempt 2 of 6)"
    )
    assert len(said) == 2
    # Synchronous every time: Lambda never retries it, and it never lands in the poller's DLQ.
    assert [params["InvocationType"] for params in invocations] == ["RequestResponse"] * 3
    assert json.loads(invocations[0]["Payload"]) == {"scheduled_time": "2026-11-27T12:00:00Z"}


def test_a_poller_that_stays_throttled_is_one_clear_line(
    poller: tuple[Archive, boto3.session.Session, list[dict[str, Any]]],
) -> None:
    archive, session, invocations = poller
    session.events.register("before-send.lambda.Invoke", _throttled)  # type: ignore[arg-type]
    slept: list[float] = []

    with pytest.raises(OperatorError) as refused:
        archive.invoke_poller("2026-11-27T12:00:00Z", on_throttle=lambda _: None, sleep=slept.append)

    assert str(refused.value) == (
        f"the poller stayed throttled for {sum(THROTTLE_PAUSES)} s "
        "(ReservedFunctionConcurrentInvocationLimitExceeded): scheduled runs hold its reserved concurrency; "
        "try again in a few minutes"
    )
    assert slept == list(THROTTLE_PAUSES)
    assert len(invocations) == len(THROTTLE_PAUSES) + 1
