"""Issue 15 through the handler: the manifest beside the media, object metadata, S3-checked uploads."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import ClientError

from runway_archiver.emulator import Fault, FeedEmulator, media_sha256
from runway_archiver_lambda.events import event_id
from tests.support.archive import Archive

Minutes = Callable[[int], str]
MiB = 1024 * 1024


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _keys(archive: Archive, task_id: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=archive.stack.bucket_name, Prefix=f"runway/{task_id}/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_an_archived_task_has_a_manifest_beside_its_media(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-m", "1 3", video_size=300_000, prompt="a lighthouse at dusk")
    archive.register("task-m")
    archive.run(minutes(0))
    assert _keys(archive, "task-m") == []  # nothing while the provider is still running

    archive.run(minutes(1))

    assert _keys(archive, "task-m") == [
        "runway/task-m/last_frame.png",
        "runway/task-m/poster.png",
        "runway/task-m/task.json",
        "runway/task-m/video.mp4",
    ]
    raw = archive.object_bytes("runway/task-m/task.json")
    manifest = json.loads(raw)
    item = archive.item("task-m")
    [event] = archive.events()
    assert manifest["manifest_version"] == 1
    assert manifest["task_id"] == "task-m"
    assert manifest["status"] == "ARCHIVED"
    assert (manifest["provider_name"], manifest["dialect"]) == ("cometapi", "feed-2024")
    assert manifest["prompt"] == "a lighthouse at dusk"
    assert "prompt_en" in manifest
    # the provider's answer as it came (the feed's `data` object)
    assert manifest["provider_answer"]["task_id"] == "task-m"
    assert manifest["provider_answer"]["status"] == "3"
    assert manifest["archived_at"] == minutes(1)
    # the event that announces it names the same id, and names the manifest
    assert manifest["event_id"] == event["id"] == event_id("task-m", "ARCHIVED")
    assert manifest["event_type"] == event["type"] == "runway.task.archived"
    assert event["data"]["manifest"]["key"] == "runway/task-m/task.json"
    assert item["manifest"]["key"] == "runway/task-m/task.json"
    assert item["manifest"]["sha256"] == hashlib.sha256(raw).hexdigest()
    # every asset: key, size, SHA-256, content type, the S3 version, S3's checksum
    video = manifest["assets"]["video"]
    head = archive.object("runway/task-m/video.mp4")
    assert video["key"] == "runway/task-m/video.mp4"
    assert video["size"] == 300_000
    assert video["sha256"] == media_sha256("/media/task-m/video.mp4", 300_000)
    assert video["content_type"] == "video/mp4"
    assert video["version_id"] == head["VersionId"] and video["version_id"]
    assert video["checksum_sha256"] == _b64_sha256(archive.object_bytes("runway/task-m/video.mp4"))
    assert set(manifest["assets"]) == {"video", "poster", "last_frame"}
    assert manifest["assets"] == json.loads(json.dumps(item["assets"], default=int))
    assert item["manifest"]["version_id"] == archive.object("runway/task-m/task.json")["VersionId"]


def test_the_manifest_is_written_after_the_media_and_before_the_item_names_it(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-o", "3")
    archive.register("task-o")
    order: list[str] = []

    def s3_write(params: dict[str, Any], **_: Any) -> None:
        order.append(params["Key"])

    def table_write(params: dict[str, Any], **_: Any) -> None:
        if "UNANNOUNCED" in json.dumps(params.get("ExpressionAttributeValues", {}), default=str):
            order.append("item: ARCHIVED")

    session = boto3.session.Session()
    session.events.register("provide-client-params.s3.PutObject", s3_write)
    session.events.register("provide-client-params.s3.CompleteMultipartUpload", s3_write)
    session.events.register("provide-client-params.dynamodb.UpdateItem", table_write)

    archive.run(minutes(0), session=session)

    assert order == [
        "runway/task-o/poster.png",
        "runway/task-o/last_frame.png",
        "runway/task-o/video.mp4",
        "runway/task-o/task.json",
        "item: ARCHIVED",
    ]


def test_no_manifest_for_a_task_whose_video_failed(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task-refused", "1 2")  # the provider failed it
    feed.add_task("task-gone", "3")  # succeeded, but its video is gone
    feed.fail_media("/media/task-gone/video.mp4", *[Fault(status=404, body=b"gone")] * 10)
    archive.register("task-refused", "task-gone")

    archive.run(minutes(0))
    archive.run(minutes(1))

    assert archive.item("task-refused")["status"] == "FAILED"
    assert "manifest" not in archive.item("task-refused")
    assert archive.item("task-gone")["status"] == "PENDING"  # its video answered 404 twice
    assert "manifest" not in archive.item("task-gone")
    assert _keys(archive, "task-refused") == []
    assert "runway/task-gone/task.json" not in _keys(archive, "task-gone")
    [failed] = [e for e in archive.events() if e["subject"] == "task-refused"]
    assert failed["data"]["manifest"] is None


def test_media_objects_say_what_they_are_in_their_metadata(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-small", "3", video_size=300_000)
    feed.add_task("task-large", "3", video_size=20 * MiB)  # three 8 MiB parts
    archive.register("task-small", "task-large")

    archive.run(minutes(0))

    small = archive.object("runway/task-small/video.mp4")["Metadata"]
    assert small == {
        "task-id": "task-small",
        "role": "video",
        "sha256": media_sha256("/media/task-small/video.mp4", 300_000),
    }
    assert archive.object("runway/task-small/poster.png")["Metadata"]["role"] == "poster"
    # A multipart upload's metadata is fixed before its body is read: the SHA-256 is in the manifest.
    large = archive.object("runway/task-large/video.mp4")["Metadata"]
    assert large == {"task-id": "task-large", "role": "video"}
    manifest = json.loads(archive.object_bytes("runway/task-large/task.json"))
    assert manifest["assets"]["video"]["sha256"] == media_sha256("/media/task-large/video.mp4", 20 * MiB)
    assert archive.object("runway/task-large/task.json")["Metadata"] == {
        "task-id": "task-large",
        "role": "manifest",
        "sha256": archive.item("task-large")["manifest"]["sha256"],
    }


def test_every_request_that_carries_media_carries_its_sha256_for_s3_to_check(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    # moto stores checksums but does not check them; S3 refuses a body whose checksum does not
    # match (BadDigest). What is pinned here: every body sent carries a SHA-256 S3 can check.
    feed.add_task("task-c", "3", video_size=20 * MiB)
    archive.register("task-c")
    sent: list[tuple[str, str]] = []

    def checksum_of(request: Any, operation_name: str, **_: Any) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        declared = headers.get("x-amz-checksum-sha256") or (
            "trailer" if headers.get("x-amz-trailer") == "x-amz-checksum-sha256" else ""
        )
        sent.append((operation_name, declared))

    session = boto3.session.Session()
    session.events.register("request-created.s3.UploadPart", checksum_of)
    session.events.register("request-created.s3.PutObject", checksum_of)

    archive.run(minutes(0), session=session)

    assert [op for op, _ in sent].count("UploadPart") == 3
    assert [op for op, _ in sent].count("PutObject") == 3  # poster, last frame, manifest
    assert all(declared for _, declared in sent), sent
    head = boto3.client("s3").head_object(
        Bucket=archive.stack.bucket_name, Key="runway/task-c/video.mp4", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"]
    stored = archive.item("task-c")["assets"]["video"]["checksum_sha256"]
    # real S3 answers "<composite>-3" for three parts; moto drops the suffix
    assert stored.split("-")[0] == head["ChecksumSHA256"].split("-")[0]


def test_a_part_s3_refuses_as_corrupted_leaves_no_object_and_no_manifest(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task-bad-part", "3", video_size=20 * MiB)
    archive.register("task-bad-part")

    def refuse_second_part(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:  # S3's answer to a part whose body does not match its checksum
            response: Any = {
                "Error": {"Code": "BadDigest", "Message": "The SHA256 you specified did not match the calculated"},
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
            raise ClientError(response, "UploadPart")

    session = boto3.session.Session()
    session.events.register("provide-client-params.s3.UploadPart", refuse_second_part)

    first = archive.run(minutes(0), session=session)

    assert first["archive_errors"] == 1
    item = archive.item("task-bad-part")
    assert item["status"] == "PENDING"
    assert "BadDigest" in item["last_error"]
    assert _keys(archive, "task-bad-part") == ["runway/task-bad-part/last_frame.png", "runway/task-bad-part/poster.png"]
    assert boto3.client("s3").list_multipart_uploads(Bucket=archive.stack.bucket_name).get("Uploads", []) == []
    assert archive.run(minutes(1))["archived"] == 1
    assert "runway/task-bad-part/task.json" in _keys(archive, "task-bad-part")
