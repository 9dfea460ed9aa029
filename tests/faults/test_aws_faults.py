"""Faults on the AWS side, injected into the real boto3 clients through botocore's event hooks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.exceptions import ClientError

from runway_archiver.local.emulator import FeedEmulator
from tests.support.archive import Archive

Minutes = Callable[[int], str]
AREA = "AWS"
MiB = 1024 * 1024


def _client_error(operation: str, code: str = "InternalError") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
    return ClientError(response, operation)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def _throttled(url: str) -> AWSResponse:
    body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "Rate exceeded"})
    headers: Any = HeadersDict(
        {"x-amzn-ErrorType": "ThrottlingException", "Content-Type": "application/x-amz-json-1.0"}
    )
    return AWSResponse(url, 400, headers, _Body(body.encode()))


@pytest.mark.fault(
    AREA,
    "S3 upload failing in the middle of a multipart upload",
    "multipart upload aborted, no object visible; task PENDING; archived by the next run",
)
def test_an_s3_failure_mid_multipart_leaves_no_object(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    # Given a 20 MiB video (three 8 MiB parts) and an S3 that fails the second part
    feed.add_task("task", "3", video_size=20 * MiB)
    archive.register("task")
    parts: list[int] = []

    def fail_second_part(params: dict[str, Any], **_: Any) -> None:
        parts.append(params["PartNumber"])
        if params["PartNumber"] == 2:
            raise _client_error("UploadPart")

    session = boto3.session.Session()
    session.events.register("provide-client-params.s3.UploadPart", fail_second_part)

    first = archive.run(minutes(0), session=session)

    assert 2 in parts
    assert first["archive_errors"] == 1
    assert archive.item("task")["status"] == "PENDING"
    s3 = boto3.client("s3")
    assert s3.list_objects_v2(Bucket=archive.stack.bucket_name, Prefix="runway/task/video").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=archive.stack.bucket_name).get("Uploads", []) == []
    assert archive.run(minutes(1))["archived"] == 1
    assert int(archive.item("task")["assets"]["video"]["size"]) == 20 * MiB


@pytest.mark.fault(AREA, "SNS publish failing", "item ARCHIVED and kept in the outbox; published by the next run, once")
def test_a_failed_publish_is_delivered_by_the_next_run(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "3")
    archive.register("task")

    def refuse(**_: Any) -> None:
        raise _client_error("Publish")

    session = boto3.session.Session()
    session.events.register("before-call.sns.Publish", refuse)

    first = archive.run(minutes(0), session=session)
    assert (first["archived"], first["publish_errors"], first["announced"]) == (1, 1, 0)
    assert archive.item("task")["outbox"] == "UNANNOUNCED"

    second = archive.run(minutes(1))
    third = archive.run(minutes(2))

    assert (second["announced"], third["announced"]) == (1, 0)
    assert len(archive.events()) == 1
    assert feed.polls("task") == 1


@pytest.mark.fault(AREA, "DynamoDB throttling", "retried by boto3 (standard mode); the run completes normally")
def test_dynamodb_throttling_is_retried_by_boto3(server_archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    # Over HTTP to moto_server: an answer from a before-send hook replaces the request entirely.
    archive = server_archive
    feed.add_task("task", "3")
    archive.register("task")
    throttled: list[str] = []

    def throttle_first_two(request: Any, **_: Any) -> AWSResponse | None:
        if len(throttled) < 2:
            throttled.append(request.url)
            return _throttled(request.url)
        return None  # let moto answer

    session = boto3.session.Session()
    session.events.register_first("before-send.dynamodb.UpdateItem", throttle_first_two)  # type: ignore[arg-type]

    summary = archive.run(minutes(0), session=session)

    assert len(throttled) == 2
    assert summary["archived"] == 1
    assert summary["task_errors"] == 0
    assert len(archive.events()) == 1


@pytest.mark.fault(
    AREA,
    "DynamoDB unavailable for one task's writes",
    "that task's error logged and counted; the run goes on; the task is due again after its lease",
)
def test_an_aws_error_on_one_task_does_not_end_the_run(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "3")
    feed.add_task("other", "3")
    archive.register("task", "other")

    def break_claim_of_task(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == {"task_id": "task"} and ":lease_until" in params.get("ExpressionAttributeValues", {}):
            raise _client_error("UpdateItem", "InternalServerError")

    session = boto3.session.Session()
    session.events.register("provide-client-params.dynamodb.UpdateItem", break_claim_of_task)

    summary = archive.run(minutes(0), session=session)

    assert summary["task_errors"] == 1
    assert summary["archived"] == 1
    assert archive.item("other")["status"] == "ARCHIVED"
    assert archive.item("task")["status"] == "PENDING"
    assert archive.run(minutes(1))["archived"] == 1
