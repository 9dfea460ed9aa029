"""Every model family through the handler, in one stack: each on its own query path, answered as
its samples in events/feed/<family>/ are (the emulator builds its answers from them).

Runway's dialects are tests/integration/test_dialects.py's and test_archive_flow.py's.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest
import urllib3

from runway_archiver.consumer import receive_events
from runway_archiver.local.emulator import Fault, FeedEmulator, media_bytes, media_sha256
from runway_archiver.register import UnknownProvider, register_tasks
from runway_archiver.stack.archive import Archive as OperatorArchive
from runway_archiver.stack.archive import StackResources
from runway_archiver.stack.operations import forget
from tests.support.archive import Archive
from tests.support.samples import API_KEY, RUNWAY_API_KEY

Minutes = Callable[[int], str]

FAMILIES = ["kling", "sora", "veo", "luma", "minimax", "seedance"]
# family -> the failure reason its failed sample gives
FAILURES = {
    "kling": "Failure to pass the risk control system",
    "sora": "Your request was blocked by our moderation system. (moderation_blocked)",
    "veo": "provider reported failure",  # the gateway's Veo object has no reason
    "luma": "Prompt not allowed because it contains disallowed content",
    "minimax": "output video sensitive (1027)",
    "seedance": (
        "The request failed because the output video may contain sensitive information. "
        "(OutputVideoSensitiveContentDetected)"
    ),
}


def no_key_left_the_api(feed: FeedEmulator) -> None:
    """The CDN never saw an Authorization header."""
    assert [path for server, path, auth in feed.media_requests if server == "cdn" and auth] == []


def key_nowhere(archive: Archive, task_id: str) -> None:
    item = archive.item(task_id)
    assert API_KEY not in json.dumps(item, default=str)
    assert API_KEY not in archive.log_stream.getvalue()
    if item.get("manifest"):
        assert API_KEY not in archive.object_bytes(item["manifest"]["key"]).decode()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_goes_from_queued_to_running_to_archived_with_the_right_bytes(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, family: str
) -> None:
    task_id = f"{family}-ok"
    feed.add_task(task_id, "queued running succeeded", family=family, video_size=300_000)
    archive.register(task_id, provider=family)

    assert archive.run(minutes(0))["still_pending"] == 1
    assert archive.run(minutes(1))["still_pending"] == 1
    running = archive.item(task_id)
    summary = archive.run(minutes(2))

    assert running["model_family"] == family
    assert running["provider_name"] == family
    assert summary["archived"] == 1
    assert feed.polls(task_id) == 3
    item = archive.item(task_id)
    assert item["status"] == "ARCHIVED"
    video = item["assets"]["video"]
    assert video["key"] == f"runway/{family}/{task_id}/video.mp4"  # a layout that names the provider
    path = f"/media/{task_id}/video.mp4"
    assert archive.object_bytes(video["key"]) == b"".join(media_bytes(path, 300_000))
    assert video["sha256"] == media_sha256(path, 300_000)
    assert item["manifest"]["key"] == f"runway/{family}/{task_id}/task.json"
    manifest = json.loads(archive.object_bytes(item["manifest"]["key"]))
    assert (manifest["provider_name"], manifest["model_family"]) == (family, family)
    [event] = archive.events()
    assert event["data"]["provider_name"] == family
    assert event["data"]["model_family"] == family
    assert event["_attributes"]["provider"] == family
    assert event["_attributes"]["model_family"] == family
    no_key_left_the_api(feed)
    key_nowhere(archive, task_id)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_fails_with_its_reason(archive: Archive, feed: FeedEmulator, minutes: Minutes, family: str) -> None:
    task_id = f"{family}-no"
    feed.add_task(task_id, "running failed", family=family)
    archive.register(task_id, provider=family)

    archive.run(minutes(0))
    summary = archive.run(minutes(1))

    assert summary["failed"] == 1
    item = archive.item(task_id)
    assert (item["status"], item["error"]) == ("FAILED", FAILURES[family])
    [event] = archive.events()
    assert (event["type"], event["data"]["error"]) == ("runway.task.failed", FAILURES[family])
    assert event["_attributes"]["provider"] == family


def test_kling_archives_every_output(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("kl-two", "succeeded", family="kling", outputs=2)
    archive.register("kl-two", provider="kling")

    archive.run(minutes(0))

    assets = archive.item("kl-two")["assets"]
    assert assets["video"]["key"] == "runway/kling/kl-two/video.mp4"
    assert assets["video_2"]["key"] == "runway/kling/kl-two/video_2.mp4"
    assert (assets["poster"], assets["last_frame"]) == (None, None)  # Kling gives neither


def test_luma_archives_its_cover_last_frame_and_raw_copy(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("lu-all", "succeeded", family="luma", outputs=2)
    archive.register("lu-all", provider="luma")

    archive.run(minutes(0))

    assets = archive.item("lu-all")["assets"]
    assert assets["poster"]["key"] == "runway/luma/lu-all/poster.png"
    assert assets["last_frame"]["key"] == "runway/luma/lu-all/last_frame.png"
    assert assets["video_2"]["key"] == "runway/luma/lu-all/video_2.mp4"  # video_raw, un-watermarked
    assert archive.object_bytes(assets["poster"]["key"]) == b"".join(
        media_bytes("/media/lu-all/poster.png", int(assets["poster"]["size"]))
    )


def test_seedance_archives_its_last_frame(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("cgt-2026-lf", "succeeded", family="seedance")
    archive.register("cgt-2026-lf", provider="seedance")

    archive.run(minutes(0))

    assets = archive.item("cgt-2026-lf")["assets"]
    assert assets["last_frame"]["key"] == "runway/seedance/cgt-2026-lf/last_frame.png"
    assert assets["poster"] is None


def test_sora_content_comes_from_the_api_with_the_key_and_its_thumbnail_is_the_cover(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("video_abc", "succeeded", family="sora", video_size=200_000)
    archive.register("video_abc", provider="sora")

    archive.run(minutes(0))

    item = archive.item("video_abc")
    assert item["assets"]["poster"]["content_type"] == "image/webp"
    assert item["assets"]["poster"]["key"] == "runway/sora/video_abc/poster.webp"
    api = [(path, auth) for server, path, auth in feed.media_requests if server == "api"]
    assert ("/v1/videos/video_abc/content", True) in api
    assert ("/v1/videos/video_abc/content?variant=thumbnail", True) in api
    key_nowhere(archive, "video_abc")


def test_a_redirect_from_the_content_endpoint_to_the_cdn_drops_the_key(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("video_redir", "succeeded", family="sora", content_redirect=True, video_size=150_000)
    archive.register("video_redir", provider="sora")

    archive.run(minutes(0))

    item = archive.item("video_redir")
    assert item["status"] == "ARCHIVED"
    assert archive.object_bytes(item["assets"]["video"]["key"]) == b"".join(
        media_bytes("/media/video_redir/video.mp4", 150_000)
    )
    hops = [(server, path.split("?")[0], auth) for server, path, auth in feed.media_requests]
    assert ("api", "/v1/videos/video_redir/content", True) in hops  # the key to the API's host
    assert ("cdn", "/media/video_redir/video.mp4", False) in hops  # and not past the redirect
    no_key_left_the_api(feed)


def test_the_content_endpoint_refuses_a_request_without_the_key(feed: FeedEmulator) -> None:
    feed.add_task("video_nokey", "succeeded", family="sora")
    http = urllib3.PoolManager()

    refused = http.request("GET", f"{feed.base_url}/v1/videos/video_nokey/content")
    served = http.request(
        "GET", f"{feed.base_url}/v1/videos/video_nokey/content", headers={"Authorization": f"Bearer {API_KEY}"}
    )

    assert refused.status == 401
    assert (served.status, served.headers["Content-Type"]) == (200, "video/mp4")


def test_sora_content_before_completion_keeps_the_task_pending(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    """The content endpoint answers 400 until the task is done; a copy that met it is tried again."""
    feed.add_task("video_early", "succeeded", family="sora")
    feed.fail_media("/v1/videos/video_early/content", Fault.bare({"error": {"message": "not yet"}}, status=400))
    archive.register("video_early", provider="sora")

    archive.run(minutes(0))
    pending = archive.item("video_early")
    archive.run(minutes(1))

    assert pending["status"] == "PENDING"
    assert "HTTP 400" in pending["last_error"]
    assert archive.item("video_early")["status"] == "ARCHIVED"


def test_minimax_media_are_found_with_the_key_and_fetched_without_it(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("306792606023824", "succeeded", family="minimax")
    archive.register("306792606023824", provider="minimax")

    archive.run(minutes(0))

    assert archive.item("306792606023824")["status"] == "ARCHIVED"
    lookups = [h for h in feed.feed_headers if h.get("Authorization") == f"Bearer {API_KEY}"]
    assert len(lookups) == 2  # the query and files/retrieve
    assert ("cdn", "/media/306792606023824/video.mp4", False) in feed.media_requests
    no_key_left_the_api(feed)


def test_an_expired_cdn_url_answered_403_is_waited_out_then_archived_from_a_fresh_answer(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("kl-expired", "succeeded", family="kling")
    feed.fail_media("/media/kl-expired/video.mp4", Fault(status=403, body=b"AccessDenied", content_type="text/xml"))
    archive.register("kl-expired", provider="kling")

    archive.run(minutes(0))
    pending = archive.item("kl-expired")
    archive.run(minutes(1))

    assert pending["status"] == "PENDING"
    assert "HTTP 403" in pending["last_error"]
    assert pending["failing_since"]  # persistent: the grace period counts
    assert archive.item("kl-expired")["status"] == "ARCHIVED"


def test_an_item_naming_a_provider_nobody_serves_fails_without_a_call(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    archive.table.put_item(Item={"task_id": "pk-1", "status": "PENDING", "model_family": "pika"})

    summary = archive.run(minutes(0))

    assert summary["failed"] == 1
    item = archive.item("pk-1")
    assert item["status"] == "FAILED"
    assert item["error"].startswith("provider 'pika' is not one this archiver knows (")
    assert "kling" in item["error"] and "sora" in item["error"]
    assert feed.requests == []
    [event] = archive.events()
    assert event["data"]["error"] == item["error"]


@pytest.mark.parametrize("provider", ["runway"])
def test_one_stack_on_runways_own_api_archives_runway_and_gateway_families_each_with_its_own_key(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    """Provider=runway: Runway's task through Runway's API with Runway's key (ApiKeySecret); Kling's
    and Sora's through the gateway with the gateway's key (GatewayApiKeySecret), Sora's content
    download included. Neither key ever reaches the other API, nor the CDN."""
    feed.add_task("rw-direct", "running succeeded")
    feed.add_task("kl-gateway", "running succeeded", family="kling")
    feed.add_task("video_gateway", "succeeded", family="sora")
    archive.register("rw-direct")
    archive.register("kl-gateway", provider="kling")
    archive.register("video_gateway", provider="sora")

    archive.run(minutes(0))
    summary = archive.run(minutes(1))

    assert summary["archived"] == 2
    assert {t: archive.item(t)["status"] for t in ("rw-direct", "kl-gateway", "video_gateway")} == dict.fromkeys(
        ("rw-direct", "kl-gateway", "video_gateway"), "ARCHIVED"
    )
    assert archive.item("rw-direct")["provider_name"] == "runway"
    asked = {path for _, path in feed.requests}
    assert {"runway:rw-direct", "kling:kl-gateway", "sora:video_gateway"} <= asked
    assert not any(path.startswith("elsewhere:") for path in asked)  # nothing asked of the wrong API
    seen = {(origin, key) for origin, _, key in feed.authorizations if key}
    assert seen == {("runway", f"Bearer {RUNWAY_API_KEY}"), ("gateway", f"Bearer {API_KEY}")}
    assert ("gateway", "/v1/videos/video_gateway/content", f"Bearer {API_KEY}") in feed.authorizations
    for task_id in ("rw-direct", "kl-gateway", "video_gateway"):
        key_nowhere(archive, task_id)
        assert RUNWAY_API_KEY not in json.dumps(archive.item(task_id), default=str)
    assert RUNWAY_API_KEY not in archive.log_stream.getvalue()


@pytest.mark.parametrize(("provider", "gateway_api_key"), [("runway", None)])
def test_a_stack_on_runways_own_api_without_the_gateway_key_fails_another_familys_task_without_a_call(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("kl-elsewhere", "succeeded", family="kling")
    feed.add_task("rw-still-served", "succeeded")
    archive.register("kl-elsewhere", provider="kling")
    archive.register("rw-still-served")

    archive.run(minutes(0))

    item = archive.item("kl-elsewhere")
    assert (item["status"], item["error"]) == (
        "FAILED",
        "provider 'kling' is asked through the CometAPI gateway, and this stack's gateway key secret "
        "(GatewayApiKeySecretArn) holds no key: put it with make api-key GATEWAY=1",
    )
    assert feed.polls("kl-elsewhere") == 0
    # The gateway was asked nothing: Runway's media (on the emulator's gateway origin) are all it served.
    assert [
        path for origin, path, _ in feed.authorizations if origin == "gateway" and not path.startswith("/media/")
    ] == []
    assert archive.item("rw-still-served")["status"] == "ARCHIVED"  # Runway's tasks are unaffected


@pytest.mark.aws_refusal_expected
@pytest.mark.parametrize("provider", ["runway"])
def test_a_gateway_key_secret_that_cannot_be_read_stops_the_run_and_keeps_the_task(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    """Not "no key yet" but "cannot read": a configuration error, as for ApiKeySecret; nothing fails."""
    feed.add_task("kl-unreadable", "succeeded", family="kling")
    archive.register("kl-unreadable", provider="kling")
    # A secret that is not the stack's own: its role may not read it (AWS: AccessDeniedException).
    elsewhere = boto3.client("secretsmanager").create_secret(Name="not-the-stacks", SecretString="k")["ARN"]

    summary = archive.run(minutes(0), env={"GATEWAY_API_KEY_SECRET_ARN": elsewhere})

    assert "gateway key secret" in summary["configuration_error"]
    assert archive.item("kl-unreadable")["status"] == "PENDING"
    assert feed.polls("kl-unreadable") == 0
    archive.run(minutes(1))  # the stack's own secret again (it holds the gateway's key)
    assert archive.item("kl-unreadable")["status"] == "ARCHIVED"


def test_a_registration_with_an_unknown_provider_writes_nothing(archive: Archive) -> None:
    with pytest.raises(UnknownProvider) as refused:
        register_tasks(archive.table, ["pk-2", "pk-3"], provider="pika")

    assert str(refused.value) == (
        "unknown provider 'pika': known providers are kling, luma, minimax, runway, seedance, sora, veo"
    )
    assert archive.table.scan()["Items"] == []


def test_runway_tasks_and_other_families_share_one_stack_and_subscribers_filter_by_provider(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    url = sqs.create_queue(QueueName="kling-only")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(
        TopicArn=archive.stack.topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"provider": ["kling"]})},
    )
    feed.add_task("rw-1", "3")
    feed.add_task("kl-1", "succeeded", family="kling")
    archive.register("rw-1")
    archive.register("kl-1", provider="kling")

    assert archive.run(minutes(0))["archived"] == 2

    assert archive.item("rw-1")["assets"]["video"]["key"] == "runway/rw-1/video.mp4"  # Runway's layout, as always
    assert "model_family" not in archive.item("rw-1")  # registered without one: the default
    assert {e["subject"] for e in archive.events()} == {"rw-1", "kl-1"}
    assert [e["subject"] for e in receive_events(sqs, url)] == ["kl-1"]


def test_a_runway_task_named_like_a_familys_folder_fails_and_forget_leaves_that_folder_alone(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("kl-kept", "succeeded", family="kling")
    feed.add_task("kling", "3")
    archive.register("kl-kept", provider="kling")
    archive.register("kling")  # a Runway task whose files would sit in Kling's folder

    archive.run(minutes(0))

    item = archive.item("kling")
    assert item["status"] == "FAILED"
    assert "names the archive folder of a model family" in item["error"]
    assert feed.polls("kling") == 0
    kept = archive.item("kl-kept")["assets"]["video"]["key"]
    session = boto3.session.Session()
    resources = StackResources.find(session, archive.stack.stack_name)
    forget(OperatorArchive(session, resources.table_name, resources), "kling")
    assert archive.object_bytes(kept)  # Kling's archive is still there


@pytest.mark.parametrize("family", ["kling", "minimax"])
def test_kling_and_minimax_in_the_gateways_task_envelope_are_archived_too(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, family: str
) -> None:
    task_id = f"{family}-env"
    feed.add_task(task_id, "queued running succeeded", family=family, dialect="task-envelope")
    archive.register(task_id, provider=family)

    archive.run(minutes(0))
    archive.run(minutes(1))
    running = archive.item(task_id)
    archive.run(minutes(2))

    assert (running["dialect"], running["provider_progress"]) == ("task-envelope", "50%")
    item = archive.item(task_id)
    assert item["status"] == "ARCHIVED"
    assert item["error"] is None  # MiniMax's file id in `fail_reason` is not a failure
    assert archive.object_bytes(item["assets"]["video"]["key"]) == b"".join(
        media_bytes(f"/media/{task_id}/video.mp4", 256 * 1024)
    )
    # the envelope carries the file's address: no files/retrieve call
    assert not [h for h in feed.requests if "retrieve" in h[1]]
