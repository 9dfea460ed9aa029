"""Every dialect through the handler: today's task envelope (with Runway's task or the 2024 object
nested in it) on CometAPI's feed, and Runway's own API as the provider. The 2024 page is covered by
test_archive_flow.py and the fault suite."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from runway_archiver.local.emulator import Fault, FeedEmulator, media_bytes, media_sha256
from tests.support.archive import Archive

Minutes = Callable[[int], str]

ENVELOPE = pytest.param("cometapi", "task-envelope", id="envelope")
ENVELOPE_2024 = pytest.param("cometapi", "task-envelope/feed-2024", id="envelope-with-2024-object")
RUNWAY_API = pytest.param("runway", "feed-2024", id="runway-api")  # Runway's API ignores the feed dialect
EVERY_WAY = [ENVELOPE, ENVELOPE_2024, RUNWAY_API]
RUNWAY_SHAPED = [ENVELOPE, RUNWAY_API]  # where Runway's own task object carries the outcome


def recorded_dialect(provider: str) -> str:
    return "runway-task" if provider == "runway" else "task-envelope"


@pytest.mark.parametrize(("provider", "dialect"), EVERY_WAY)
def test_a_task_goes_from_queued_to_running_to_archived_with_the_right_bytes(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-ok", "0 1 3", dialect=dialect, video_size=300_000)
    archive.register("dl-ok")

    assert archive.run(minutes(0))["still_pending"] == 1
    assert archive.run(minutes(1))["still_pending"] == 1
    running = archive.item("dl-ok")
    summary = archive.run(minutes(2))

    assert running["dialect"] == recorded_dialect(provider)
    assert running["provider_name"] == provider
    assert running["provider_progress"] == "40%"
    assert summary["archived"] == 1
    item = archive.item("dl-ok")
    assert item["status"] == "ARCHIVED"
    assert item["provider_progress"] == "100%"
    video = item["assets"]["video"]
    assert video["key"] == "runway/dl-ok/video.mp4"
    assert archive.object_bytes(video["key"]) == b"".join(media_bytes("/media/dl-ok/video.mp4", 300_000))
    assert video["sha256"] == media_sha256("/media/dl-ok/video.mp4", 300_000)
    with_images = dialect.endswith("feed-2024") and provider == "cometapi"
    assert (item["assets"]["poster"] is not None) is with_images  # only the 2024 object carries images
    [event] = archive.events()
    assert event["data"]["provider_name"] == provider
    assert event["data"]["dialect"] == recorded_dialect(provider)
    assert event["_attributes"]["provider"] == provider
    assert event["data"]["assets"]["video"]["sha256"] == video["sha256"]


@pytest.mark.parametrize(("provider", "dialect"), EVERY_WAY)
def test_a_failure_is_recorded_with_the_providers_reason_and_code(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-fail", "1 2", dialect=dialect, fail_message="flagged by moderation")
    archive.register("dl-fail")

    archive.run(minutes(0))
    summary = archive.run(minutes(1))

    assert summary["failed"] == 1
    item = archive.item("dl-fail")
    assert item["status"] == "FAILED"
    if dialect.endswith("feed-2024") and provider == "cometapi":
        assert item["error"] == "flagged by moderation"  # the nested 2024 object has no failure code
    else:
        assert item["error"] == "flagged by moderation (SAFETY.INPUT.TEXT)"
        assert item["failure_code"] == "SAFETY.INPUT.TEXT"
    [event] = archive.events()
    assert event["type"] == "runway.task.failed"
    assert event["data"]["error"] == item["error"]


@pytest.mark.parametrize(("provider", "dialect"), RUNWAY_SHAPED)
def test_a_cancelled_task_ends_failed_as_cancelled(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-cancel", "0 cancelled", dialect=dialect)
    archive.register("dl-cancel")

    archive.run(minutes(0))
    summary = archive.run(minutes(1))

    assert summary["failed"] == 1
    assert archive.item("dl-cancel")["error"] == "cancelled"
    assert archive.item("dl-cancel")["upstream_status" if provider == "cometapi" else "provider_status"] == "CANCELLED"
    assert [e["type"] for e in archive.events()] == ["runway.task.failed"]


@pytest.mark.parametrize(("provider", "dialect"), RUNWAY_SHAPED)
def test_a_throttled_task_is_queued_and_polled_until_it_finishes(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-throttled", "throttled throttled running succeeded", dialect=dialect)
    archive.register("dl-throttled")

    outcomes = [archive.run(minutes(n)) for n in range(4)]

    assert [o["still_pending"] for o in outcomes] == [1, 1, 1, 0]
    assert outcomes[-1]["archived"] == 1
    assert feed.polls("dl-throttled") == 4


@pytest.mark.parametrize(("provider", "dialect"), EVERY_WAY)
def test_a_new_task_the_provider_does_not_know_yet_is_waited_for_then_archived(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-new", "3", dialect=dialect, not_found_polls=2)
    archive.register("dl-new")

    first, second = archive.run(minutes(0)), archive.run(minutes(1))
    waiting = archive.item("dl-new")
    third = archive.run(minutes(2))

    assert (first["poll_errors"], second["poll_errors"]) == (1, 1)
    assert "failing_since" not in waiting  # transient while the task is new: no grace period started
    assert "task_not_exist" in waiting["last_error"] or "Task not found" in waiting["last_error"]
    assert third["archived"] == 1
    assert archive.item("dl-new")["status"] == "ARCHIVED"


@pytest.mark.parametrize(("provider", "dialect"), RUNWAY_SHAPED)
def test_a_task_still_unknown_after_the_new_task_window_fails_after_the_grace_period(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-never", "3", dialect=dialect, not_found_polls=1000)
    archive.register("dl-never")

    archive.run(minutes(0))
    assert "failing_since" not in archive.item("dl-never")
    archive.run(minutes(11))  # past NEW_TASK_GRACE_SECONDS (10 min): the grace period starts
    started = archive.item("dl-never")
    summary = archive.run(minutes(11 + 61))  # past PERSISTENT_ERROR_GRACE_SECONDS (60 min)

    assert "failing_since" in started
    assert summary["failed"] == 1
    assert archive.item("dl-never")["status"] == "FAILED"
    assert [e["type"] for e in archive.events()] == ["runway.task.failed"]


def _envelope(task_id: str, status: str, nested: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"task_id": task_id, "status": status, "progress": "100%", "data": nested, **fields}


@pytest.mark.parametrize(("provider", "dialect"), RUNWAY_SHAPED)
def test_a_success_without_any_media_url_keeps_the_task_polling(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-nomedia", "3", dialect=dialect)
    runway_task = {"id": "dl-nomedia", "status": "SUCCEEDED", "output": []}
    bare = Fault.bare(runway_task) if provider == "runway" else None
    feed.fail_feed("dl-nomedia", bare or Fault.envelope(_envelope("dl-nomedia", "SUCCESS", runway_task)))
    archive.register("dl-nomedia")

    summary = archive.run(minutes(0))

    assert summary["still_pending"] == 1
    assert archive.events() == []
    assert any("without a media URL" in line.get("note", "") for line in archive.logs())
    assert archive.run(minutes(1))["archived"] == 1  # the next answer carries the video


@pytest.mark.parametrize(("provider", "dialect"), RUNWAY_SHAPED)
def test_two_outputs_are_archived_as_video_and_video_2(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, provider: str, dialect: str
) -> None:
    feed.add_task("dl-two", "3", dialect=dialect, outputs=2, video_size=200_000)
    archive.register("dl-two")

    summary = archive.run(minutes(0))

    assert summary["archived"] == 1
    assets = archive.item("dl-two")["assets"]
    assert set(assets) == {"video", "poster", "last_frame", "video_2"}  # the three always, then the others
    assert assets["video_2"]["key"] == "runway/dl-two/video_2.mp4"
    assert assets["video_2"]["sha256"] == media_sha256("/media/dl-two/video_2.mp4", 200_000)
    assert assets["video"]["sha256"] == media_sha256("/media/dl-two/video.mp4", 200_000)
    [event] = archive.events()
    assert set(event["data"]["assets"]) == {"video", "poster", "last_frame", "video_2"}
    assert event["data"]["assets"]["video_2"] == {**assets["video_2"], "size": int(assets["video_2"]["size"])}


def test_envelope_and_upstream_disagreeing_are_decided_by_one_rule_and_logged(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    video = feed.media_url("dl-lag", "video.mp4")
    feed.add_task("dl-lag", "3")
    feed.add_task("dl-split", "3")
    # the gateway still says IN_PROGRESS, the upstream task has finished: the terminal word wins
    lagging = _envelope("dl-lag", "IN_PROGRESS", {"id": "dl-lag", "status": "SUCCEEDED", "output": [video]})
    feed.fail_feed("dl-lag", Fault.envelope(lagging))
    # both terminal but different: the upstream's own word wins
    failed_upstream = {"id": "dl-split", "status": "FAILED", "failure": "bad output", "failureCode": "INTERNAL"}
    split = _envelope("dl-split", "SUCCESS", failed_upstream, result_url=feed.media_url("dl-split", "video.mp4"))
    feed.fail_feed("dl-split", Fault.envelope(split))
    archive.register("dl-lag", "dl-split")

    summary = archive.run(minutes(0))

    assert (summary["archived"], summary["failed"]) == (1, 1)
    assert archive.item("dl-lag")["status"] == "ARCHIVED"
    assert archive.item("dl-split")["error"] == "bad output (INTERNAL)"
    notes = [line["note"] for line in archive.logs() if "disagree" in line.get("note", "")]
    assert len(notes) == 2


def test_a_callback_carrying_the_envelopes_task_object_is_a_hint(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    task = feed.add_task("dl-cb", "1 1 3", dialect="task-envelope")
    archive.register("dl-cb")
    archive.run(minutes(0))
    task.polls = 2  # the provider has finished
    body = feed.feed_object(task, "3")  # the envelope's task object, without code and message
    lying = {**body, "result_url": "http://169.254.169.254/latest/meta-data/"}  # never trusted

    response = archive.callback(json.dumps(lying))

    assert response["statusCode"] == 202
    archive.work()
    item = archive.item("dl-cb")
    assert item["status"] == "ARCHIVED"
    assert item["dialect"] == "task-envelope"
    assert item["assets"]["video"]["key"] == "runway/dl-cb/video.mp4"
    assert feed.polls("dl-cb") == 2  # the scheduled poll, then the re-read the callback caused
