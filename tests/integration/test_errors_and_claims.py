"""Errors from the feed, claims held by other runs, failed publishes and the time budget."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import boto3
import pytest

from runway_archiver.local.emulator import Fault, FeedEmulator
from tests.support.archive import Archive
from tests.support.samples import API_KEY

Minutes = Callable[[int], str]


def test_a_wrong_api_key_stops_the_run_and_leaves_every_task_pending(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    # Given five tasks, and a key in the secret that the feed refuses
    feed.api_key = "the-right-key"
    for n in range(5):
        feed.add_task(f"task-{n}", "3")
    archive.register(*(f"task-{n}" for n in range(5)))

    # When one run polls them one at a time
    summary = archive.run(minutes(0), env={"POLL_CONCURRENCY": "1"})

    # Then the first 401 stops the run: nothing is lost, nothing more is called
    assert summary["configuration_error"] is not None
    assert "401" in summary["configuration_error"]
    assert summary["poll_errors"] == 1
    assert summary["left_for_next_run"] == 4
    assert sum(feed.polls(f"task-{n}") for n in range(5)) == 1
    for n in range(5):
        assert archive.item(f"task-{n}")["status"] == "PENDING"
    assert archive.events() == []
    # and the key is nowhere in the logs
    assert API_KEY not in archive.log_stream.getvalue()
    assert any(line.get("request_id") == "emu-401" for line in archive.logs())


def test_a_429_then_success_is_retried_within_the_run(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task-busy", "3")
    feed.fail_feed("task-busy", Fault.http(429, retry_after=0))
    archive.register("task-busy")

    summary = archive.run(minutes(0))

    assert summary["archived"] == 1
    assert summary["poll_errors"] == 0
    assert feed.polls("task-busy") == 2


def test_server_errors_then_success_are_retried_with_backoff(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-flaky", "3")
    feed.fail_feed("task-flaky", Fault.http(500), Fault.http(502))
    archive.register("task-flaky")

    summary = archive.run(minutes(0))

    assert summary["archived"] == 1
    assert feed.polls("task-flaky") == 3


def test_server_errors_that_outlast_the_retries_leave_the_task_pending(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-down", "3")
    feed.fail_feed("task-down", *[Fault.http(503, retry_after=0) for _ in range(5)])
    archive.register("task-down")

    summary = archive.run(minutes(0))
    assert summary["poll_errors"] == 1
    item = archive.item("task-down")
    assert item["status"] == "PENDING"
    assert "503" in item["last_error"]

    # the next run, once the feed is back, archives it
    assert archive.run(minutes(1))["archived"] == 1


def test_an_html_answer_and_a_non_200_code_are_poll_errors_not_outcomes(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-html", "3")
    feed.add_task("task-code", "3")
    feed.fail_feed("task-html", Fault.html())
    feed.fail_feed("task-code", Fault.application_error(404, "task not found"))
    archive.register("task-html", "task-code")

    summary = archive.run(minutes(0))

    assert summary["poll_errors"] == 2
    assert summary["still_pending"] == 2
    assert "not JSON" in archive.item("task-html")["last_error"]
    assert "code 404" in archive.item("task-code")["last_error"]
    assert archive.events() == []
    assert archive.run(minutes(1))["archived"] == 2


def test_a_task_claimed_by_a_live_run_is_left_alone(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    # Given a task another run claimed a moment ago (its lease runs for five more minutes)
    feed.add_task("task-held", "3")
    archive.register("task-held")
    archive.table.update_item(
        Key={"task_id": "task-held"},
        UpdateExpression="SET lease_owner = :o, lease_until = :u",
        ExpressionAttributeValues={":o": "other-run", ":u": archive.clock.now() + 300},
    )

    summary = archive.run(minutes(0))

    assert summary["due"] == 0
    assert feed.polls("task-held") == 0
    assert archive.item("task-held")["lease_owner"] == "other-run"


def test_a_claim_left_by_a_crashed_run_is_taken_over_after_its_lease(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-orphan", "3")
    archive.register("task-orphan")
    archive.table.update_item(
        Key={"task_id": "task-orphan"},
        UpdateExpression="SET lease_owner = :o, lease_until = :u",
        ExpressionAttributeValues={":o": "crashed-run", ":u": archive.clock.now() - 1},
    )

    summary = archive.run(minutes(0))

    assert summary["archived"] == 1
    assert "lease_owner" not in archive.item("task-orphan")
    assert len(archive.events()) == 1


def test_a_claim_is_exclusive(archive: Archive, minutes: Minutes) -> None:
    # Two runs racing for one task: the conditional write lets exactly one through.
    from runway_archiver_lambda.tasks import TaskStore

    archive.register("task-race")
    store = TaskStore(archive.table)
    now, wall = 1_800_000_000, int(time.time())

    first = store.claim_pending("task-race", "run-a", now, wall, 300)
    second = store.claim_pending("task-race", "run-b", now, wall, 300)

    assert first is not None and first.run_id == "run-a"
    assert second is None


@pytest.mark.aws_refusal_expected  # the role may publish only to its own topic: AWS refuses the other
def test_a_failed_publish_is_announced_by_the_next_run_exactly_once(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    # Given a run whose topic is unreachable (a topic that does not exist, and AWS refuses it)
    feed.add_task("task-news", "3")
    archive.register("task-news")
    missing_topic = archive.stack.topic_arn + "-missing"

    first = archive.run(minutes(0), env={"TOPIC_ARN": missing_topic})

    # Then the outcome is recorded durably and waits in the outbox, unannounced
    assert first["archived"] == 1
    assert first["publish_errors"] == 1
    item = archive.item("task-news")
    assert item["status"] == "ARCHIVED"
    assert item["outbox"] == "UNANNOUNCED"
    assert "lease_owner" not in item
    assert archive.events() == []

    # When the next run reaches the topic
    second = archive.run(minutes(1))
    third = archive.run(minutes(2))

    # Then it publishes the stored event, once, without polling or copying again
    assert second["announced"] == 1
    assert third["announced"] == 0
    [event] = archive.events()
    assert event["subject"] == "task-news"
    assert event["time"] == minutes(0)  # the stored event, not a new one
    assert feed.polls("task-news") == 1
    assert "outbox" not in archive.item("task-news")


def test_the_same_outcome_always_has_the_same_event_id(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    from runway_archiver_lambda.events import event_id

    feed.add_task("task-id", "3")
    archive.register("task-id")
    archive.run(minutes(0))

    [event] = archive.events()
    assert event["id"] == event_id("task-id", "ARCHIVED")
    assert event_id("task-id", "ARCHIVED") != event_id("task-id", "FAILED")


def test_no_task_is_claimed_when_the_remaining_time_is_low(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-late", "3")
    archive.register("task-late")

    summary = archive.run(minutes(0), remaining_seconds=30)

    assert summary["due"] == 1
    assert summary["claimed"] == 0
    assert summary["left_for_next_run"] == 1
    assert feed.polls("task-late") == 0
    assert archive.item("task-late") == {"task_id": "task-late", "status": "PENDING"}
    assert archive.run(minutes(1))["archived"] == 1


def test_a_task_id_that_would_escape_the_key_prefix_fails_without_a_download(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    archive.register("../../etc", "a/b")

    summary = archive.run(minutes(0))

    assert summary["failed"] == 2
    for task_id in ("../../etc", "a/b"):
        item = archive.item(task_id)
        assert item["status"] == "FAILED"
        assert "not a valid identifier" in item["error"]
    assert feed.requests == []
    assert boto3.client("s3").list_objects_v2(Bucket=archive.stack.bucket_name).get("KeyCount") == 0
    assert sorted(e["subject"] for e in archive.events()) == ["../../etc", "a/b"]


def test_media_that_cannot_be_fetched_leaves_the_task_pending_for_a_later_try(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-cdn", "3")
    feed.fail_media("/media/task-cdn/video.mp4", Fault(status=404, body=b"gone", content_type="text/plain"))
    archive.register("task-cdn")

    first = archive.run(minutes(0))

    assert first["archive_errors"] == 1
    item = archive.item("task-cdn")
    assert item["status"] == "PENDING"
    assert "HTTP 404" in item["last_error"]
    assert archive.run(minutes(1))["archived"] == 1


def test_media_on_a_refused_address_fails_the_task(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    # the stack allows 127.0.0.1/32 for the emulator; 127.0.0.2 and the metadata service stay refused
    feed.add_task("task-evil", "3")
    data = feed.task_data(feed.tasks["task-evil"], "3")
    feed.fail_feed("task-evil", Fault.answer({**data, "video_url": "http://169.254.169.254/latest/meta-data/"}))
    archive.register("task-evil")

    summary = archive.run(minutes(0))

    assert summary["failed"] == 1
    item = archive.item("task-evil")
    assert item["status"] == "FAILED"
    assert "instance metadata" in item["error"]
    [event] = archive.events()
    assert event["type"] == "runway.task.failed"


def _emitted(stdout: str, metric: str) -> list[tuple[str, dict[str, str], float]]:
    """(namespace, dimensions, value) of `metric` in the EMF lines a handler printed."""
    found = []
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            if any(m["Name"] == metric for m in directive["Metrics"]):
                dimensions = {name: blob[name] for names in directive["Dimensions"] for name in names}
                value = blob[metric]
                found.append(
                    (directive["Namespace"], dimensions, float(value[0] if isinstance(value, list) else value))
                )
    return found


@pytest.mark.parametrize(
    "broken",
    # the role may read only the stack's own secret: AWS refuses another one (a configuration error too)
    ["wrong key", pytest.param("secret with no value", marks=pytest.mark.aws_refusal_expected)],
)
def test_a_configuration_error_is_counted_in_the_metric_its_alarm_watches(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    # Given a task, and a key the feed refuses or (as a fresh deploy leaves it) no key at all
    feed.add_task("task-cfg", "3")
    archive.register("task-cfg")
    env = {"POWERTOOLS_METRICS_NAMESPACE": "RunwayArchiver"}
    if broken == "wrong key":
        feed.api_key = "the-right-key"
    else:
        env["API_KEY_SECRET_ARN"] = boto3.client("secretsmanager").create_secret(Name="empty-key")["ARN"]
    capsys.readouterr()

    # When a scheduled run meets it
    summary = archive.run(minutes(0), env=env)

    # Then the run ends normally (no Lambda error) but says so in ConfigurationErrors, which
    # ConfigurationErrorsAlarm watches (tests/test_template.py pins the alarm on this metric)
    assert summary["configuration_error"]
    emitted = _emitted(capsys.readouterr().out, "ConfigurationErrors")
    service = archive.stack.stack_name  # the stack's own series (tests/test_template.py: one per stack)
    assert emitted == [("RunwayArchiver", {"service": service}, 1.0)]
    assert archive.item("task-cfg")["status"] == "PENDING"

    # and once the key is right, the next run says 0 (the alarm returns to OK)
    feed.api_key = API_KEY
    archive.run(minutes(1))
    assert _emitted(capsys.readouterr().out, "ConfigurationErrors") == [("RunwayArchiver", {"service": service}, 0.0)]
