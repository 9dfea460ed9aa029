"""The callback function through its handler (a function URL event) and the worker behind it."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest

from runway_archiver.local.emulator import FeedEmulator
from tests.support.archive import Archive
from tests.support.samples import API_KEY, load_event

Minutes = Callable[[int], str]


def _callback_body(task_id: str, **changes: str) -> str:
    """What the provider posts: the feed's `data` object, without the code/msg envelope."""
    data = load_event("feed/succeeded.json")["data"]
    return json.dumps({**data, "task_id": task_id, **changes})


def _queued(archive: Archive) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=archive.work_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_callback_gets_a_finished_task_archived_before_its_next_scheduled_poll(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    task = feed.add_task("cb-ok", "1 1 3")
    archive.register("cb-ok")
    archive.run(minutes(0))  # running; polled again only in a while
    assert archive.item("cb-ok")["status"] == "PENDING"
    task.polls = 2  # the provider has finished and calls back

    response = archive.callback(_callback_body("cb-ok"))

    assert response["statusCode"] == 202
    assert json.loads(response["body"])["task_id"] == "cb-ok"
    archive.work()
    item = archive.item("cb-ok")
    assert item["status"] == "ARCHIVED"
    assert item["assets"]["video"]["key"] == "runway/cb-ok/video.mp4"
    [event] = archive.events()
    assert event["type"] == "runway.task.archived"
    assert feed.polls("cb-ok") == 2  # the scheduled poll, then the re-read the callback caused


def test_the_body_is_never_trusted_the_feed_decides(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("cb-liar", "1")  # the feed says running
    archive.register("cb-liar")

    response = archive.callback(_callback_body("cb-liar", status="3", state="succeeded"))

    assert response["statusCode"] == 202
    archive.work()
    assert archive.item("cb-liar")["status"] == "PENDING"
    assert archive.events() == []
    assert not [r for r in feed.requests if r[0] == "GET"]  # no media fetched from the body's URLs


@pytest.mark.parametrize(
    ("token", "in_header", "status"),
    [
        pytest.param("", False, 401, id="no-token"),
        pytest.param("wrong-token", False, 401, id="wrong-token"),
        pytest.param("wrong-token", True, 401, id="wrong-token-in-header"),
        pytest.param(None, True, 202, id="stack-token-in-header"),
        pytest.param(None, False, 202, id="stack-token-in-query"),
    ],
)
def test_only_callbacks_with_the_stacks_token_are_accepted(
    archive: Archive, feed: FeedEmulator, token: str | None, in_header: bool, status: int
) -> None:
    feed.add_task("cb-token", "3")
    archive.register("cb-token")

    response = archive.callback(_callback_body("cb-token"), token=token, in_header=in_header)

    assert response["statusCode"] == status
    assert _queued(archive) == (1 if status == 202 else 0)
    logged = json.dumps(archive.logs())
    assert archive.callback_token not in logged
    assert API_KEY not in logged


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param("{not json", 400, id="malformed-json"),
        pytest.param("[1, 2]", 400, id="json-array"),
        pytest.param('{"status": "3"}', 400, id="no-task-id"),
        pytest.param('{"task_id": 42}', 400, id="task-id-not-a-string"),
        pytest.param('{"task_id": "../../etc/passwd"}', 400, id="task-id-with-path"),
        pytest.param(json.dumps({"task_id": "cb-x", "pad": "x" * 70_000}), 413, id="over-the-size-limit"),
        pytest.param(_callback_body("cb-unknown"), 404, id="unknown-task"),
    ],
)
def test_bad_callbacks_are_refused_with_a_4xx_and_queue_nothing(archive: Archive, body: str, status: int) -> None:
    response = archive.callback(body)

    assert response["statusCode"] == status
    assert "message" in json.loads(response["body"])
    assert _queued(archive) == 0


def test_a_base64_encoded_body_is_read_like_any_other(archive: Archive, feed: FeedEmulator) -> None:
    feed.add_task("cb-b64", "3")
    archive.register("cb-b64")

    response = archive.callback(_callback_body("cb-b64"), base64_encoded=True)

    assert response["statusCode"] == 202


# Deployed with the parameter, not only the variable: it also gives the callback function's role
# dynamodb:PutItem, without which AWS refuses the registration (the policy guard too).
@pytest.mark.parametrize("extra_parameters", [{"AllowCallbackRegistration": "true"}])
def test_with_registration_allowed_an_unknown_task_is_registered_and_archived(
    archive: Archive, feed: FeedEmulator
) -> None:
    feed.add_task("cb-new", "3")

    response = archive.callback(_callback_body("cb-new"))

    assert response["statusCode"] == 202
    assert archive.item("cb-new")["status"] == "PENDING"
    archive.work()
    assert archive.item("cb-new")["status"] == "ARCHIVED"
    assert len(archive.events()) == 1


@pytest.mark.parametrize("extra_parameters", [{"AllowCallbackRegistration": "true"}])
def test_a_callback_url_naming_a_provider_registers_the_task_as_that_familys(
    archive: Archive, feed: FeedEmulator
) -> None:
    feed.add_task("cgt-cb-1", "succeeded", family="seedance")
    allowed = {"ALLOW_CALLBACK_REGISTRATION": "true"}
    body = json.dumps(load_event("feed/seedance/callback-completed.json") | {"task_id": "cgt-cb-1"})

    refused = archive.callback(body, env=allowed, query={"provider": "pika"})
    response = archive.callback(body, env=allowed, query={"provider": "seedance"})

    assert refused["statusCode"] == 400
    assert "unknown provider 'pika'" in json.loads(refused["body"])["message"]
    assert response["statusCode"] == 202
    assert archive.item("cgt-cb-1")["model_family"] == "seedance"
    archive.work()
    item = archive.item("cgt-cb-1")
    assert item["status"] == "ARCHIVED"
    assert item["assets"]["video"]["key"] == "runway/seedance/cgt-cb-1/video.mp4"


def test_a_callback_for_a_task_already_ended_changes_nothing(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("cb-done", "3")
    archive.register("cb-done")
    archive.run(minutes(0))
    archive.events()

    response = archive.callback(_callback_body("cb-done"))

    assert response["statusCode"] == 200
    assert "ARCHIVED" in json.loads(response["body"])["message"]
    assert _queued(archive) == 0


def test_a_callback_racing_a_scheduled_run_gives_one_archive_and_one_event(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("cb-race", "3")
    archive.register("cb-race")

    # The callback is queued, the scheduled run archives the task first, then the worker gets the hint
    assert archive.callback(_callback_body("cb-race"))["statusCode"] == 202
    archive.run(minutes(0))
    drained = archive.work()

    assert drained.records == 1
    assert drained.returned == 0
    assert archive.item("cb-race")["status"] == "ARCHIVED"
    assert len(archive.events()) == 1
    assert feed.polls("cb-race") == 1


@pytest.mark.aws_refusal_expected  # the role may read only its own secret: AWS refuses this one
def test_without_a_readable_token_secret_the_sender_is_told_to_retry(archive: Archive) -> None:
    response = archive.callback(
        _callback_body("cb-any"), env={"CALLBACK_TOKEN_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:1:secret:gone"}
    )

    assert response["statusCode"] == 503
