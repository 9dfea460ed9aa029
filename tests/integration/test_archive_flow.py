"""The archiver end to end through the Lambda handler: moto for AWS, the feed emulator over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from runway_archiver.local.emulator import FeedEmulator, media_sha256
from tests.support.archive import Archive, epoch
from tests.support.samples import load_event

Minutes = Callable[[int], str]


def test_a_task_that_succeeds_is_archived_with_all_three_assets(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    # Given a task the provider reports queued, then running, then succeeded
    feed.add_task("task-ok", "0 1 3", video_size=300_000)
    archive.register("task-ok")

    # When the schedule runs the poller three minutes in a row
    summaries = [archive.run(minutes(n)) for n in range(3)]

    # Then the first two runs leave it pending and the third archives it
    assert [s["still_pending"] for s in summaries] == [1, 1, 0]
    assert summaries[2]["archived"] == 1
    item = archive.item("task-ok")
    assert item["status"] == "ARCHIVED"
    video = item["assets"]["video"]
    assert video["key"] == "runway/task-ok/video.mp4"
    assert int(video["size"]) == 300_000
    assert video["sha256"] == media_sha256("/media/task-ok/video.mp4", 300_000)
    assert video["content_type"] == "video/mp4"
    assert item["assets"]["poster"]["key"] == "runway/task-ok/poster.png"
    assert item["assets"]["last_frame"]["key"] == "runway/task-ok/last_frame.png"
    head = archive.object("runway/task-ok/video.mp4")
    assert head["ContentLength"] == 300_000
    assert head["ContentType"] == "video/mp4"
    # the provider's fields are kept on the item
    assert item["prompt"] == "a cat"
    assert item["point"] == "200"
    assert item["refund"] == "0"
    assert item["provider_create_time"] == "1724313052"
    assert "provider_update_time" in item
    assert "outbox" not in item and "lease_owner" not in item
    assert int(item["poll_count"]) == 3


def test_the_completion_event_is_a_cloudevent_with_filterable_attributes(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-ev", "3")
    archive.register("task-ev")

    archive.run(minutes(0))

    [event] = archive.events()
    assert event["specversion"] == "1.0"
    assert event["type"] == "runway.task.archived"
    assert event["subject"] == "task-ev"
    assert event["source"] == archive.stack.function_environment["EVENT_SOURCE"]
    assert event["time"] == minutes(0)
    assert event["datacontenttype"] == "application/json"
    assert isinstance(event["id"], str) and event["id"]
    data = event["data"]
    # The contract's fields, the additive ones included: who answered, in which shape, the manifest
    # and the task's model family.
    assert set(data) == {
        "task_id", "status", "assets", "prompt", "prompt_en", "error", "provider", "provider_name", "dialect",
        "manifest", "model_family",
    }  # fmt: skip
    assert data["provider_name"] == "cometapi"
    assert data["model_family"] == "runway"  # an item without one is Runway's
    assert data["dialect"] == "feed-2024"
    assert data["task_id"] == "task-ev"
    assert data["status"] == "ARCHIVED"
    assert data["error"] is None
    assert data["prompt"] == "a cat"
    assert set(data["assets"]) == {"video", "poster", "last_frame"}
    for asset in data["assets"].values():
        # each asset names the object's version and the checksum S3 stored
        assert set(asset) == {"bucket", "key", "size", "sha256", "content_type", "version_id", "checksum_sha256"}
        assert asset["bucket"] == archive.stack.bucket_name
    assert data["provider"]["status"] == "3"
    assert data["provider"]["video_url"].endswith("/media/task-ev/video.mp4")
    assert event["_attributes"] == {
        "type": "runway.task.archived",
        "status": "ARCHIVED",
        "provider": "cometapi",
        "model_family": "runway",
    }
    # the event stored on the item is the event that was published
    assert archive.item("task-ev")["announced_at"]


def test_a_success_without_poster_or_last_frame_records_them_as_absent(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-bare", "3", poster=False, last_frame=False, with_state=False)
    archive.register("task-bare")

    summary = archive.run(minutes(0))

    assert summary["archived"] == 1
    item = archive.item("task-bare")
    assert item["status"] == "ARCHIVED"
    assert item["assets"]["poster"] is None
    assert item["assets"]["last_frame"] is None
    [event] = archive.events()
    assert event["data"]["assets"]["poster"] is None
    assert event["data"]["assets"]["video"]["key"] == "runway/task-bare/video.mp4"


def test_a_failed_task_is_recorded_with_the_providers_message_and_announced(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-bad", "1 2", fail_message="Generation failed: content moderation")
    archive.register("task-bad")

    archive.run(minutes(0))
    summary = archive.run(minutes(1))

    assert summary["failed"] == 1
    item = archive.item("task-bad")
    assert item["status"] == "FAILED"
    assert item["error"] == "Generation failed: content moderation"
    assert item["refund"] == "1"
    assert "assets" not in item
    [event] = archive.events()
    assert event["type"] == "runway.task.failed"
    assert event["data"]["error"] == "Generation failed: content moderation"
    assert event["data"]["assets"] == {"video": None, "poster": None, "last_frame": None}
    assert event["_attributes"] == {
        "type": "runway.task.failed",
        "status": "FAILED",
        "provider": "cometapi",
        "model_family": "runway",
    }


def test_queued_and_running_tasks_stay_pending_and_are_polled_again(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-q", "0")
    feed.add_task("task-r", "1")
    archive.register("task-q", "task-r")

    first = archive.run(minutes(0))
    second = archive.run(minutes(1))

    assert first["polled"] == second["polled"] == 2
    assert first["still_pending"] == 2
    for task_id in ("task-q", "task-r"):
        item = archive.item(task_id)
        assert item["status"] == "PENDING"
        assert int(item["poll_count"]) == 2
        assert "lease_owner" not in item
    assert archive.item("task-r")["provider_status"] == "1"
    assert archive.events() == []


def test_a_task_not_yet_due_is_not_polled(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task-wait", "1")
    archive.register("task-wait")
    archive.run(minutes(0))

    # ten seconds later the task is not due again (the fast interval is 30 s)
    summary = archive.run(minutes(0).replace(":00Z", ":10Z"))

    assert summary["due"] == 0
    assert feed.polls("task-wait") == 1


def test_polls_back_off_to_at_most_ten_minutes(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task-slow", "1")
    archive.register("task-slow")
    delays = []
    now = 0
    for _ in range(16):
        archive.run(minutes(now))
        next_poll = int(archive.item("task-slow")["next_poll_at"])
        from datetime import datetime

        current = int(datetime.fromisoformat(minutes(now)).timestamp())
        delays.append(next_poll - current)
        now += max(1, -(-(next_poll - current) // 60))
    assert delays[:10] == [30] * 10
    assert delays[10:14] == [60, 120, 240, 480]
    assert max(delays) == 600
    assert delays[-1] == 600


def test_an_unknown_status_is_treated_as_still_running_and_logged(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    from runway_archiver.local.emulator import Fault

    feed.add_task("task-odd", "1")
    feed.fail_feed("task-odd", Fault.answer({**load_event("feed/unknown-status.json")["data"], "task_id": "task-odd"}))
    archive.register("task-odd")

    summary = archive.run(minutes(0))

    assert summary["still_pending"] == 1
    assert archive.item("task-odd")["status"] == "PENDING"
    [warning] = [line for line in archive.logs() if line["message"] == "feed answer read with care"]
    assert "unknown status '7'" in warning["note"]
    assert warning["task_id"] == "task-odd"
    assert warning["level"] == "WARNING"


def test_a_task_with_no_terminal_answer_expires_after_24_hours_and_is_announced(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-stuck", "1")
    archive.register("task-stuck")
    archive.run(minutes(0))

    almost = archive.run(minutes(24 * 60 - 1))
    assert almost["expired"] == 0
    summary = archive.run(minutes(24 * 60))

    assert summary["expired"] == 1
    item = archive.item("task-stuck")
    assert item["status"] == "EXPIRED"
    assert "no terminal answer within 24 h" in item["error"]
    [event] = archive.events()
    assert event["type"] == "runway.task.expired"
    assert event["data"]["error"] == item["error"]
    assert event["data"]["provider"]["status"] == "1"


def test_the_consoles_test_event_neither_expires_nor_announces_a_task(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    # Given a task the provider is still generating
    feed.add_task("task-new", "1")
    archive.register("task-new")

    # When a new user invokes the poller once with the console's test event (it says 1970), then the schedule ticks
    tried = archive.run(minutes(0), event=load_event("console-test-event.json"))
    tick = archive.run(minutes(1))

    # Then nothing expired and nothing was announced: the task is still pending, first seen when it was
    assert tick["expired"] == tick["announced"] == 0
    assert archive.events() == []
    item = archive.item("task-new")
    assert item["status"] == "PENDING"
    assert item["first_seen_at"] == epoch(minutes(0))
    assert tried["still_pending"] == tick["still_pending"] == 1
    # And the test run ran on the wall clock, and said why
    assert tried["now"] == minutes(0)
    assert tried["ignored_event_time"] == "1970-01-01T00:00:00Z"
    [warning] = [line for line in archive.logs() if line.get("event_time") == "1970-01-01T00:00:00Z"]
    assert warning["level"] == "WARNING"


def test_an_event_time_far_in_the_future_neither_expires_nor_defers_a_task(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-new", "1 1 1 3")
    archive.register("task-new")
    archive.run(minutes(0))

    future = archive.run(minutes(1), event={"scheduled_time": "2099-01-01T00:00:00Z"})
    nearly = archive.run(minutes(2), event={"scheduled_time": "2026-11-24T12:06:59Z"})  # 4 min 59 s ahead: trusted
    tick = archive.run(minutes(8))

    assert future["expired"] == 0 and future["still_pending"] == 1
    assert future["now"] == minutes(1) and future["ignored_event_time"] == "2099-01-01T00:00:00Z"
    assert nearly["now"] == "2026-11-24T12:06:59Z" and nearly["ignored_event_time"] is None
    assert tick["archived"] == 1  # polled at its normal pace, not pushed back to 2099
    assert archive.item("task-new")["first_seen_at"] == epoch(minutes(0))
    assert [event["type"] for event in archive.events()] == ["runway.task.archived"]


def test_run_time_comes_from_the_eventbridge_time_field(archive: Archive, feed: FeedEmulator) -> None:
    feed.add_task("task-eb", "3")
    archive.register("task-eb")

    summary = archive.run(event=load_event("eventbridge-scheduled.json"))

    assert summary["now"] == "2026-11-24T12:00:00Z"
    assert archive.events()[0]["time"] == "2026-11-24T12:00:00Z"


def test_run_time_comes_from_the_scheduler_input(archive: Archive, feed: FeedEmulator) -> None:
    summary = archive.run(event=load_event("scheduler-input.json"))
    assert summary["now"] == "2026-11-24T12:00:00Z"


def test_an_event_without_a_time_runs_on_the_wall_clock(archive: Archive) -> None:
    from datetime import UTC, datetime

    summary = archive.run(event={})

    ran_at = datetime.fromisoformat(summary["now"])
    assert abs((datetime.now(UTC) - ran_at).total_seconds()) < 60


def test_an_unreadable_event_time_is_a_clear_error(archive: Archive) -> None:
    with pytest.raises(ValueError, match="scheduled_time"):
        archive.run(event={"scheduled_time": "yesterday"})


@pytest.mark.parametrize("extra_parameters", [{"KeyPrefix": "media"}])
def test_a_stack_deployed_with_another_key_prefix_archives_under_it(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    # Given the stack deployed with KeyPrefix=media (its S3 grant and lifecycle rule follow it:
    # tests/test_template.py), a task that succeeds
    assert archive.stack.function_environment["KEY_PREFIX"] == "media"
    feed.add_task("task-prefixed", "3")
    archive.register("task-prefixed")

    # When a run archives it
    archive.run(minutes(0))

    # Then every object is under media/, where the functions may write, and nothing under runway/
    assets = archive.item("task-prefixed")["assets"]
    assert {asset["key"] for asset in assets.values()} == {
        "media/task-prefixed/video.mp4",
        "media/task-prefixed/poster.png",
        "media/task-prefixed/last_frame.png",
    }
    listed = boto3.client("s3").list_objects_v2(Bucket=archive.stack.bucket_name)["Contents"]
    assert all(o["Key"].startswith("media/") for o in listed)
