"""Registrations that are not what the contract asks for."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest
from botocore.exceptions import ClientError

from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.register import register_tasks
from tests.support.archive import Archive

Minutes = Callable[[int], str]
AREA = "Bad registrations"


@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param("../escape", id="dot-dot-slash"),
        pytest.param("a/b", id="slash"),
        pytest.param("/absolute", id="leading-slash"),
        pytest.param("tab\there", id="control-character"),
        pytest.param("new\nline", id="newline"),
        pytest.param("x" * 201, id="too-long"),
    ],
)
@pytest.mark.fault(
    AREA,
    "a task_id with path or control characters",
    "FAILED without any poll or download; nothing written to S3; announced",
)
def test_a_task_id_that_could_escape_the_prefix_fails_cleanly(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, task_id: str
) -> None:
    archive.table.put_item(Item={"task_id": task_id, "status": "PENDING"})

    summary = archive.run(minutes(0))

    assert summary["failed"] == 1
    item = archive.item(task_id)
    assert item["status"] == "FAILED"
    assert "not a valid identifier" in item["error"]
    assert feed.requests == []
    assert boto3.client("s3").list_objects_v2(Bucket=archive.stack.bucket_name).get("KeyCount") == 0
    [event] = archive.events()
    assert event["subject"] == task_id


@pytest.mark.fault(
    AREA,
    "a non-string or empty task_id",
    "refused at registration (the table's key is a string; the helper checks too)",
)
def test_a_non_string_or_empty_task_id_cannot_be_registered(archive: Archive) -> None:
    for bad_key in ({"N": "42"}, {"S": ""}):
        with pytest.raises(ClientError, match="ValidationException"):
            boto3.client("dynamodb").put_item(
                TableName=archive.stack.table_name, Item={"task_id": bad_key, "status": {"S": "PENDING"}}
            )
    with pytest.raises(ValueError, match="must not be empty"):
        register_tasks(archive.table, ["  "])
    with pytest.raises(TypeError, match="must be a string"):
        register_tasks(archive.table, [42])  # type: ignore[list-item]


@pytest.mark.fault(
    AREA,
    "an unknown `status` value (e.g. `pending`, `DONE`)",
    "left alone: never claimed, polled or announced (only PENDING registers a task; README)",
)
def test_an_item_with_an_unknown_status_is_left_alone(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("lower", "3")
    feed.add_task("done", "3")
    archive.table.put_item(Item={"task_id": "lower", "status": "pending"})
    archive.table.put_item(Item={"task_id": "done", "status": "DONE"})

    summary = archive.run(minutes(0))

    assert summary["due"] == 0
    assert feed.requests == []
    assert archive.item("lower") == {"task_id": "lower", "status": "pending"}
    assert archive.events() == []
