"""The archive on its own, through the handler: the manifest beside the media, object metadata, S3-checked uploads."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

import boto3

from runway_archiver.local.emulator import Fault, FeedEmulator, media_sha256
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
    # A multipart upload's metadata is fixed before its body is read: it is re-stamped by a copy of
    # itself, and the version the item, the event and the manifest name is that copy, the current one.
    digest = media_sha256("/media/task-large/video.mp4", 20 * MiB)
    head = archive.object("runway/task-large/video.mp4")
    assert head["Metadata"] == {"task-id": "task-large", "role": "video", "sha256": digest}
    assert head["ContentType"] == "video/mp4"
    recorded = archive.item("task-large")["assets"]["video"]
    manifest = json.loads(archive.object_bytes("runway/task-large/task.json"))
    [event] = [e for e in archive.events() if e["subject"] == "task-large"]
    assert recorded["sha256"] == manifest["assets"]["video"]["sha256"] == digest
    assert recorded["version_id"] == manifest["assets"]["video"]["version_id"] == head["VersionId"]
    assert event["data"]["assets"]["video"]["version_id"] == head["VersionId"]
    # one CopyObject: S3 stores the whole file's SHA-256, not a composite of its parts
    assert recorded["checksum_sha256"] == _b64_sha256(archive.object_bytes("runway/task-large/video.mp4"))
    assert manifest["assets"]["video"]["checksum_sha256"] == recorded["checksum_sha256"]
    versions = boto3.client("s3").list_object_versions(
        Bucket=archive.stack.bucket_name, Prefix="runway/task-large/video.mp4"
    )["Versions"]
    # the upload itself is kept as a noncurrent version, which the bucket's lifecycle rule expires
    assert [v["IsLatest"] for v in versions].count(True) == 1 and len(versions) == 2
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

    copies: list[dict[str, str]] = []

    def copy_headers(request: Any, **_: Any) -> None:
        copies.append({k.lower(): v for k, v in request.headers.items()})

    session = boto3.session.Session()
    session.events.register("request-created.s3.UploadPart", checksum_of)
    session.events.register("request-created.s3.PutObject", checksum_of)
    session.events.register("request-created.s3.CopyObject", copy_headers)

    archive.run(minutes(0), session=session)

    assert [op for op, _ in sent].count("UploadPart") == 3
    assert [op for op, _ in sent].count("PutObject") == 3  # poster, last frame, manifest
    assert all(declared for _, declared in sent), sent
    # the re-stamping copy asks S3 for a SHA-256 of the copy, of the version just uploaded, new metadata
    [copy] = copies
    assert copy["x-amz-checksum-algorithm"] == "SHA256"
    assert copy["x-amz-metadata-directive"] == "REPLACE"
    assert "versionId=" in copy["x-amz-copy-source"]
    head = boto3.client("s3").head_object(
        Bucket=archive.stack.bucket_name, Key="runway/task-c/video.mp4", ChecksumMode="ENABLED"
    )
    stored = archive.item("task-c")["assets"]["video"]["checksum_sha256"]
    # one CopyObject: S3 stores the whole file's SHA-256 (the upload's "<composite>-3" is replaced)
    assert stored == head["ChecksumSHA256"] == _b64_sha256(archive.object_bytes("runway/task-c/video.mp4"))


def test_a_copy_answer_without_a_checksum_records_the_sha256_the_archiver_computed(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    # An emulator may leave the checksum out of its CopyObject answer; S3 stores the whole file's
    # SHA-256 after a single CopyObject with ChecksumAlgorithm=SHA256, which the archiver computed.
    feed.add_task("task-quiet", "3", video_size=9 * MiB)
    archive.register("task-quiet")

    def drop_checksum(parsed: dict[str, Any], **_: Any) -> None:
        parsed.get("CopyObjectResult", {}).pop("ChecksumSHA256", None)

    session = boto3.session.Session()
    session.events.register("after-call.s3.CopyObject", drop_checksum)

    archive.run(minutes(0), session=session)

    video = archive.item("task-quiet")["assets"]["video"]
    assert video["sha256"] == media_sha256("/media/task-quiet/video.mp4", 9 * MiB)
    assert video["checksum_sha256"] == _b64_sha256(archive.object_bytes("runway/task-quiet/video.mp4"))
