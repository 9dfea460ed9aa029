"""The archiver's rules as plain functions: fast, no AWS, no HTTP.

The same rules are exercised end to end through the handler in tests/integration and tests/faults;
here each is pinned down on its own, with the sample answers from events/feed/.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import urllib3

from runway_archiver_lambda.address_guard import AddressGuard, AddressRefused
from runway_archiver_lambda.config import ConfigError, Settings
from runway_archiver_lambda.events import build_event, event_id
from runway_archiver_lambda.feed import Progress, Provider, classify
from runway_archiver_lambda.feed.client import default_retry
from runway_archiver_lambda.lifecycle import poll_delay
from runway_archiver_lambda.workqueue import BadWorkRequest, WorkRequest

FEED = Path(__file__).resolve().parents[2] / "events" / "feed"
REQUIRED = {
    "TABLE_NAME": "tasks",
    "BUCKET_NAME": "archive",
    "TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:done",
    "API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:key",
}


def answer(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FEED / name).read_text())["data"]
    return data


@pytest.mark.parametrize(
    ("sample", "progress"),
    [
        ("queued.json", Progress.QUEUED),
        ("running.json", Progress.RUNNING),
        ("succeeded.json", Progress.SUCCEEDED),
        ("succeeded-legacy.json", Progress.SUCCEEDED),  # status "3" alone, no `state`
        ("succeeded-video-only.json", Progress.SUCCEEDED),
        ("failed.json", Progress.FAILED),
        ("reseller-contradiction.json", Progress.FAILED),  # state wins over status
        ("succeeded-without-video.json", Progress.UNKNOWN),  # "3" is success only with a video_url
        ("unknown-status.json", Progress.UNKNOWN),
    ],
)
def test_feed_answers_are_classified_as_the_api_page_says(sample: str, progress: Progress) -> None:
    data = answer(sample)
    classified = classify(str(data["task_id"]), data)
    assert classified.progress is progress
    if progress is Progress.UNKNOWN or sample == "reseller-contradiction.json":
        assert classified.note  # read with care: logged


def test_a_numeric_status_is_read_as_its_string_and_a_boolean_is_not_a_status() -> None:
    assert classify("t", {"status": 2}).progress is Progress.FAILED
    assert classify("t", {"status": True}).progress is Progress.UNKNOWN


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/video.mp4",
        "http://10.1.2.3/video.mp4",
        "http://172.16.0.9/video.mp4",
        "http://192.168.1.1/video.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/video.mp4",
        "http://[fd00:ec2::254]/video.mp4",
        "http://[::ffff:10.0.0.1]/video.mp4",  # an IPv4 private address inside IPv6
        "file:///etc/passwd",
        "ftp://cdn.example.com/video.mp4",
        "http:///video.mp4",
    ],
)
def test_the_address_guard_refuses_urls_that_point_inside(url: str) -> None:
    with pytest.raises(AddressRefused):
        AddressGuard().check_url(url)


def test_allowed_private_networks_never_open_the_metadata_address() -> None:
    everything_private = [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    guard = AddressGuard(everything_private)
    guard.check_url("http://10.1.2.3/video.mp4")  # allowed by the operator
    with pytest.raises(AddressRefused, match="metadata"):
        guard.check_url("http://169.254.169.254/latest/meta-data/")


def test_a_public_address_passes() -> None:
    AddressGuard().check_url("https://93.184.215.14/video.mp4")


def test_polling_is_every_run_then_backs_off_to_ten_minutes() -> None:
    settings = Settings.from_environ(REQUIRED)
    delays = [poll_delay(polls, settings) for polls in range(1, 17)]
    assert delays[:10] == [30] * 10
    assert delays[10:] == [60, 120, 240, 480, 600, 600]


def test_work_requests_round_trip_and_bad_ones_are_refused() -> None:
    request = WorkRequest("task-1", token="dispatch:run-1")
    assert WorkRequest.decode(request.encode()) == request
    for body in ("not json", "{}", '{"task_id": 7}', '{"task_id": "t", "reason": "whim"}'):
        with pytest.raises(BadWorkRequest):
            WorkRequest.decode(body)


def test_an_outcome_has_one_event_id_whoever_records_it() -> None:
    assert event_id("task-1", "ARCHIVED") == event_id("task-1", "ARCHIVED")
    assert event_id("task-1", "ARCHIVED") != event_id("task-1", "FAILED")
    assert event_id("task-1", "ARCHIVED") != event_id("task-2", "ARCHIVED")


def test_the_event_is_a_cloudevent_with_the_documented_fields() -> None:
    event = build_event(
        task_id="task-1",
        status="FAILED",
        time="2026-11-24T12:00:00Z",
        source="urn:runway-archiver:test",
        assets={},
        prompt="a cat",
        prompt_en="a cat",
        provider={"msg": "moderation"},
        error="moderation",
    )
    assert set(event) == {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}
    assert (event["specversion"], event["type"], event["subject"]) == ("1.0", "runway.task.failed", "task-1")
    assert event["data"]["error"] == "moderation"
    assert event["data"]["assets"] == {"video": None, "poster": None, "last_frame": None}


def test_configuration_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="TABLE_NAME"):
        Settings.from_environ({k: v for k, v in REQUIRED.items() if k != "TABLE_NAME"})
    with pytest.raises(ConfigError, match="POLL_CONCURRENCY"):
        Settings.from_environ({**REQUIRED, "POLL_CONCURRENCY": "many"})


def test_the_tracer_is_made_on_the_first_call_and_wraps_the_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    from runway_archiver_lambda.observability import traced

    monkeypatch.delenv("POWERTOOLS_TRACE_DISABLED", raising=False)
    calls: list[Any] = []

    def handler(event: Any, context: Any) -> Any:
        calls.append(event)
        return {"seen": event}

    wrapped = traced(handler)
    assert wrapped.__name__ == "handler"
    assert wrapped({"n": 1}, None) == {"seen": {"n": 1}}
    assert wrapped({"n": 2}, None) == {"seen": {"n": 2}}
    assert calls == [{"n": 1}, {"n": 2}]


def test_the_provider_is_chosen_by_configuration_and_a_wrong_one_is_named() -> None:
    assert Settings.from_environ(REQUIRED).feed_base_url == "https://api.cometapi.com"
    runway = Settings.from_environ({**REQUIRED, "PROVIDER": "runway", "RUNWAY_API_BASE_URL": "http://127.0.0.1:9/"})
    assert (runway.provider, runway.feed_base_url) == (Provider.RUNWAY, "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="PROVIDER='openai' is not one of cometapi, runway"):
        Settings.from_environ({**REQUIRED, "PROVIDER": "openai"})


def test_the_gateway_key_secret_is_read_when_the_template_sets_it_and_absent_otherwise() -> None:
    # The template sets GATEWAY_API_KEY_SECRET_ARN to "" on a cometapi stack: ApiKeySecret serves every family.
    assert Settings.from_environ({**REQUIRED, "GATEWAY_API_KEY_SECRET_ARN": ""}).gateway_key_secret_id is None
    direct = Settings.from_environ({**REQUIRED, "PROVIDER": "runway", "GATEWAY_API_KEY_SECRET_ARN": " arn:gw "})
    assert (direct.api_key_secret_id, direct.gateway_key_secret_id) == (REQUIRED["API_KEY_SECRET_ARN"], "arn:gw")


@pytest.mark.real_backoff
def test_the_feed_retries_back_off_exponentially_with_jitter_within_a_run() -> None:
    """A 503 is retried at once, then after about 1 s, 2 s and 4 s (plus up to 0.5 s of jitter each),
    so four retries fit well inside a run yet do not hammer a struggling feed."""
    retry = default_retry()
    waits = []
    for _ in range(4):
        retry = retry.increment(method="POST", url="/runway/feed", response=urllib3.HTTPResponse(status=503))
        waits.append(retry.get_backoff_time())
    assert waits[0] == 0
    for wait, floor in zip(waits[1:], (1.0, 2.0, 4.0), strict=True):
        assert floor <= wait <= floor + 0.5
    with pytest.raises(urllib3.exceptions.MaxRetryError):
        retry.increment(method="POST", url="/runway/feed", response=urllib3.HTTPResponse(status=503))
