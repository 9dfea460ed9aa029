"""Faults of the media CDN, injected through the emulator, observed through the handler."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runway_archiver.local.emulator import Fault, FeedEmulator, media_sha256
from tests.support.archive import Archive

Minutes = Callable[[int], str]
AREA = "Media CDN"
VIDEO = "/media/task/video.mp4"
KEY = "runway/task/video.mp4"
MiB = 1024 * 1024


def _nothing_left_in_the_bucket(archive: Archive) -> None:
    s3 = boto3.client("s3")
    assert s3.list_objects_v2(Bucket=archive.stack.bucket_name, Prefix="runway/task/video").get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=archive.stack.bucket_name).get("Uploads", []) == []


@pytest.mark.fault(AREA, "500 then success", "retried within the run; archived")
def test_a_server_error_then_success_is_retried(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "3")
    feed.fail_media(VIDEO, Fault(status=500, body=b"oops", content_type="text/plain"))
    archive.register("task")

    assert archive.run(minutes(0))["archived"] == 1
    assert sum(1 for r in feed.requests if r == ("GET", VIDEO)) == 2


RETRY_NEXT_POLL = "no object and no open multipart upload left; task PENDING; the next run archives it"


@pytest.mark.parametrize(
    ("video_size", "fault", "env", "error_part"),
    [
        pytest.param(
            300_000,
            Fault.media(truncate_at=100_000),
            {},
            "broken off",
            id="truncated",
            marks=pytest.mark.fault(AREA, "body shorter than Content-Length", RETRY_NEXT_POLL),
        ),
        pytest.param(
            20 * MiB,
            Fault.media(truncate_at=10 * MiB),
            {},
            "broken off",
            id="cut-halfway-20MiB",
            marks=pytest.mark.fault(AREA, "connection cut halfway through a 20 MiB file", RETRY_NEXT_POLL),
        ),
        pytest.param(
            2 * MiB,
            Fault.media(drip_seconds=0.05),
            {"MEDIA_COPY_TIMEOUT_SECONDS": "0.5"},
            "in time",
            id="slow-drip",
            marks=pytest.mark.fault(AREA, "slow drip (64 KiB every 50 ms, copy budget 0.5 s)", RETRY_NEXT_POLL),
        ),
    ],
)
def test_a_broken_download_leaves_nothing_and_is_retried(
    archive: Archive,
    feed: FeedEmulator,
    minutes: Minutes,
    video_size: int,
    fault: Fault,
    env: dict[str, str],
    error_part: str,
) -> None:
    feed.add_task("task", "3", video_size=video_size)
    feed.fail_media(VIDEO, fault)
    archive.register("task")

    first = archive.run(minutes(0), env=env)

    assert first["archive_errors"] == 1
    item = archive.item("task")
    assert item["status"] == "PENDING"
    assert error_part in item["last_error"]
    _nothing_left_in_the_bucket(archive)
    assert archive.run(minutes(1))["archived"] == 1
    video = archive.item("task")["assets"]["video"]
    assert (int(video["size"]), video["sha256"]) == (video_size, media_sha256(VIDEO, video_size))
    assert len(archive.events()) == 1


SLOW_HOST = (
    "cut off at the copy deadline, however slowly the bytes come; task PENDING with the reason; "
    "EXPIRED on schedule (24 h) when the host keeps at it"
)


@pytest.mark.parametrize(
    ("fault", "dripping_for"),
    [
        pytest.param(
            Fault.media(header_drip_seconds=0.05),
            4.0,  # about 85 bytes of status line and headers: 4.2 s
            id="dripped-headers",
            marks=pytest.mark.fault(AREA, "a host dripping its headers a byte at a time (copy budget 1 s)", SLOW_HOST),
        ),
        pytest.param(
            Fault.media(drip_piece=1, drip_seconds=0.03, truncate_at=150),
            4.5,  # 150 bytes
            id="dripped-body",
            marks=pytest.mark.fault(AREA, "a host dripping its body a byte at a time (copy budget 1 s)", SLOW_HOST),
        ),
    ],
)
def test_a_host_that_drips_bytes_is_cut_off_at_the_copy_deadline_and_the_task_expires(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, fault: Fault, dripping_for: float
) -> None:
    # A byte every 30-50 ms restarts urllib3's read timeout every time: only the copy's own deadline
    # (MEDIA_COPY_TIMEOUT_SECONDS) can end it. The host stops dripping after `dripping_for` seconds,
    # so a copy that waited it out fails differently ("broken off") or, for headers, succeeds.
    feed.add_task("task", "3")
    feed.fail_media(VIDEO, *[fault] * 6)  # urllib3 may ask again within the run
    archive.register("task")
    budget = {"MEDIA_COPY_TIMEOUT_SECONDS": "1"}

    started = time.monotonic()
    first = archive.run(minutes(0), env=budget)
    took = time.monotonic() - started

    assert first["archive_errors"] == 1
    item = archive.item("task")
    assert item["status"] == "PENDING"
    assert "video: copy not finished in time" in item["last_error"]
    assert took < dripping_for  # ended by the deadline, not by the host
    _nothing_left_in_the_bucket(archive)
    assert archive.events() == []

    feed.fail_media(VIDEO, *[fault] * 6)
    last = archive.run(minutes(24 * 60), env=budget)

    assert last["expired"] == 1
    item = archive.item("task")
    assert item["status"] == "EXPIRED"
    assert "no terminal answer within 24 h" in item["error"] and "not finished in time" in item["error"]
    _nothing_left_in_the_bucket(archive)
    [event] = archive.events()
    assert event["type"] == "runway.task.expired"


@pytest.mark.fault(
    AREA, "no Content-Length (chunked)", "streamed and counted; archived with the right size and SHA-256"
)
def test_a_chunked_body_without_length_is_archived(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "3", video_size=9 * MiB)
    feed.fail_media(VIDEO, Fault.media(chunked=True))
    archive.register("task")

    assert archive.run(minutes(0))["archived"] == 1
    video = archive.item("task")["assets"]["video"]
    assert int(video["size"]) == 9 * MiB
    assert video["sha256"] == media_sha256(VIDEO, 9 * MiB)
    assert archive.object(KEY)["ContentLength"] == 9 * MiB


@pytest.mark.fault(AREA, "a redirect chain of 2 hops", "followed, each hop checked by the address guard; archived")
def test_a_short_redirect_chain_is_followed(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "3")
    data = feed.task_data(feed.tasks["task"], "3")
    feed.fail_feed("task", Fault.answer({**data, "video_url": feed.media_url("task", "hop1.mp4")}))
    feed.fail_media("/media/task/hop1.mp4", Fault(status=302, headers={"Location": "/media/task/hop2.mp4"}))
    feed.fail_media(
        "/media/task/hop2.mp4", Fault(status=307, headers={"Location": feed.media_url("task", "video.mp4")})
    )
    archive.register("task")

    assert archive.run(minutes(0))["archived"] == 1
    assert archive.item("task")["assets"]["video"]["sha256"] == media_sha256(VIDEO, 256 * 1024)


GRACE = "PENDING with failing_since; still so after the grace period (60 min): FAILED with the reason, announced"


def _redirect_loop(feed: FeedEmulator) -> None:
    data = feed.task_data(feed.tasks["task"], "3")
    feed.fail_feed("task", *[Fault.answer({**data, "video_url": feed.media_url("task", "loop.mp4")})] * 3)
    for _ in range(3 * 4):
        feed.fail_media("/media/task/loop.mp4", Fault(status=302, headers={"Location": "/media/task/loop.mp4"}))


@pytest.mark.parametrize(
    ("inject", "error_part"),
    [
        pytest.param(
            lambda feed: feed.fail_media(VIDEO, *[Fault(status=404, body=b"gone")] * 3),
            "HTTP 404",
            id="404",
            marks=pytest.mark.fault(AREA, "404 / 403 (expired link)", GRACE),
        ),
        pytest.param(
            lambda feed: feed.fail_media(VIDEO, *[Fault(status=403, body=b"expired")] * 3),
            "HTTP 403",
            id="403",
            marks=pytest.mark.fault(AREA, "404 / 403 (expired link)", GRACE),
        ),
        pytest.param(
            lambda feed: feed.fail_media(VIDEO, *[Fault.media(stream_content_type="text/html")] * 3),
            "Content-Type 'text/html'",
            id="html-instead-of-video",
            marks=pytest.mark.fault(AREA, "wrong content type (HTML instead of video)", GRACE),
        ),
        pytest.param(
            _redirect_loop,
            "more than 3 redirects",
            id="redirect-loop",
            marks=pytest.mark.fault(AREA, "a redirect chain over the limit (3)", GRACE),
        ),
    ],
)
def test_media_that_stays_unavailable_fails_after_the_grace_period(
    archive: Archive,
    feed: FeedEmulator,
    minutes: Minutes,
    inject: Callable[[FeedEmulator], None],
    error_part: str,
) -> None:
    feed.add_task("task", "3")
    inject(feed)
    archive.register("task")

    archive.run(minutes(0))
    archive.run(minutes(30))
    assert archive.item("task")["status"] == "PENDING"
    summary = archive.run(minutes(61))

    assert summary["failed"] == 1
    item = archive.item("task")
    assert item["status"] == "FAILED"
    assert error_part in item["error"]
    _nothing_left_in_the_bucket(archive)
    [event] = archive.events()
    assert event["type"] == "runway.task.failed"
    assert event["data"]["error"] == item["error"]


TOO_LARGE = "FAILED at once with the reason; no object, no open multipart upload"


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            None,
            id="content-length-over-limit",
            marks=pytest.mark.fault(AREA, "a body larger than MAX_MEDIA_BYTES, announced by Content-Length", TOO_LARGE),
        ),
        pytest.param(
            Fault.media(chunked=True),
            id="chunked-over-limit",
            marks=pytest.mark.fault(
                AREA,
                "a body larger than MAX_MEDIA_BYTES, chunked (no Content-Length)",
                TOO_LARGE + " (cut at the limit)",
            ),
        ),
    ],
)
def test_media_over_the_size_limit_fails_the_task(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, fault: Fault | None
) -> None:
    feed.add_task("task", "3", video_size=12 * MiB)
    if fault:
        feed.fail_media(VIDEO, fault)
    archive.register("task")

    summary = archive.run(minutes(0), env={"MAX_MEDIA_BYTES": str(10 * MiB)})

    assert summary["failed"] == 1
    assert "limit of 10485760 bytes" in archive.item("task")["error"]
    _nothing_left_in_the_bucket(archive)


# -- S3 refusing a media write ------------------------------------------------------------------
S3 = "AWS"


def _refusal(operation: str, code: str, message: str, status: int = 400) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def _media_keys(archive: Archive) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=archive.stack.bucket_name, Prefix="runway/task/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.mark.parametrize(
    ("video_size", "operation"),
    [
        pytest.param(20 * MiB, "UploadPart", id="a-part-of-a-multipart-upload"),
        pytest.param(300_000, "PutObject", id="a-single-request-upload"),
    ],
)
@pytest.mark.fault(
    S3,
    "BadDigest: S3 refuses a body whose SHA-256 does not match (a part, or a whole small file)",
    "no object, no open multipart upload, no manifest; task PENDING with the code; archived by the next run, once",
)
def test_a_body_s3_refuses_as_corrupted_leaves_no_object_and_no_manifest(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, video_size: int, operation: str
) -> None:
    # moto stores checksums but does not check them: S3's answer to a body that does not match its
    # SHA-256 is injected where it happens, on the request that carried the body.
    feed.add_task("task", "3", video_size=video_size)
    archive.register("task")

    def refuse_the_video(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == KEY and params.get("PartNumber", 2) == 2:
            raise _refusal(operation, "BadDigest", "The SHA256 you specified did not match the calculated checksum.")

    session = boto3.session.Session()
    session.events.register(f"provide-client-params.s3.{operation}", refuse_the_video)

    first = archive.run(minutes(0), session=session)

    assert first["archive_errors"] == 1
    item = archive.item("task")
    assert item["status"] == "PENDING"
    assert "BadDigest" in item["last_error"]
    assert _media_keys(archive) == ["runway/task/last_frame.png", "runway/task/poster.png"]
    assert boto3.client("s3").list_multipart_uploads(Bucket=archive.stack.bucket_name).get("Uploads", []) == []
    assert archive.events() == []
    assert archive.run(minutes(1))["archived"] == 1
    assert "runway/task/task.json" in _media_keys(archive)
    assert len(archive.events()) == 1


@pytest.mark.fault(
    S3,
    "the copy that re-stamps a multipart upload with its SHA-256 refused (CopyObject)",
    "task PENDING with the reason, no manifest, nothing announced; the next run archives it again, "
    "re-stamped, announced once",
)
def test_a_failed_restamp_is_a_setback_and_the_next_run_archives_again(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task", "3", video_size=20 * MiB)  # multipart: re-stamped by a copy of itself
    archive.register("task")
    copies: list[str] = []

    def refuse_the_copy(params: dict[str, Any], **_: Any) -> None:
        copies.append(params["Key"])
        raise _refusal("CopyObject", "InternalError", "injected", status=500)

    failing = boto3.session.Session()
    failing.events.register("provide-client-params.s3.CopyObject", refuse_the_copy)

    first = archive.run(minutes(0), session=failing)

    assert copies and set(copies) == {KEY}
    assert first["archive_errors"] == 1
    item = archive.item("task")
    assert item["status"] == "PENDING"
    assert "re-stamping" in item["last_error"] and "InternalError" in item["last_error"]
    assert "manifest" not in item and "runway/task/task.json" not in _media_keys(archive)
    assert archive.events() == []

    assert archive.run(minutes(1))["archived"] == 1

    video = archive.item("task")["assets"]["video"]
    head = archive.object(KEY)
    assert head["Metadata"] == {"task-id": "task", "role": "video", "sha256": media_sha256(VIDEO, 20 * MiB)}
    assert video["version_id"] == head["VersionId"]
    [event] = archive.events()
    assert event["type"] == "runway.task.archived"
