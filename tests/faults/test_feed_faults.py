"""Faults of the feed API, injected through the emulator, observed through the handler."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from runway_archiver.local.emulator import Fault, FeedEmulator
from runway_archiver.local.engines import free_port
from tests.support.archive import Archive
from tests.support.samples import API_KEY

Minutes = Callable[[int], str]
AREA = "Feed API"


def _answer(feed: FeedEmulator, name: str, **changes: object) -> Fault:
    return Fault.answer({**feed.task_data(feed.tasks[name], "3"), **changes})


RECOVERED_IN_RUN = "retried within the run with backoff; archived, one event"


@pytest.mark.parametrize(
    ("faults", "env"),
    [
        pytest.param(
            [Fault(drop=True)],
            {},
            id="connection-closed",
            marks=pytest.mark.fault(AREA, "connection closed before an answer", RECOVERED_IN_RUN),
        ),
        pytest.param(
            [Fault(delay=1.0)],
            {"READ_TIMEOUT_SECONDS": "0.3"},
            id="read-timeout",
            marks=pytest.mark.fault(AREA, "read timeout", RECOVERED_IN_RUN),
        ),
        pytest.param(
            [Fault.http(429, retry_after=1)],
            {},
            id="429-retry-after",
            marks=pytest.mark.fault(AREA, "429 with Retry-After", RECOVERED_IN_RUN + " (waited Retry-After)"),
        ),
        pytest.param(
            [Fault.http(429)],
            {},
            id="429-bare",
            marks=pytest.mark.fault(AREA, "429 without Retry-After", RECOVERED_IN_RUN),
        ),
        *[
            pytest.param(
                [Fault.http(status)],
                {},
                id=f"{status}-once",
                marks=pytest.mark.fault(AREA, "500/502/503/504/524 once, then success", RECOVERED_IN_RUN),
            )
            for status in (500, 502, 503, 504, 524)
        ],
        pytest.param(
            [Fault.http(500), Fault.http(502), Fault.http(503, retry_after=0), Fault.http(524)],
            {},
            id="burst-of-4",
            marks=pytest.mark.fault(AREA, "a burst of 4 server errors, then success", RECOVERED_IN_RUN),
        ),
    ],
)
def test_passing_faults_are_retried_within_the_run(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, faults: list[Fault], env: dict[str, str]
) -> None:
    feed.add_task("task", "3")
    feed.fail_feed("task", *faults)
    archive.register("task")

    summary = archive.run(minutes(0), env=env)

    assert summary["archived"] == 1
    assert summary["poll_errors"] == 0
    assert feed.polls("task") == len(faults) + 1
    assert len(archive.events()) == 1


STAYS_PENDING = "poll error logged and counted; task stays PENDING with last_error; the next run archives it"


@pytest.mark.parametrize(
    ("make_faults", "error_part"),
    [
        pytest.param(
            lambda feed: [_answer(feed, "task", prompt="x" * 500).cut_after(40)],
            "cut off",
            id="reset-mid-answer",
            marks=pytest.mark.fault(AREA, "reset in the middle of the answer", STAYS_PENDING),
        ),
        pytest.param(
            lambda feed: [Fault.http(503, retry_after=0)] * 5,
            "HTTP 503",
            id="503-burst-over-retries",
            marks=pytest.mark.fault(AREA, "server errors outlasting the 4 retries", STAYS_PENDING),
        ),
        pytest.param(
            lambda feed: [Fault.html()],
            "not JSON",
            id="html-200",
            marks=pytest.mark.fault(AREA, "HTML or invalid JSON with HTTP 200", STAYS_PENDING),
        ),
        pytest.param(
            lambda feed: [Fault(body=b'{"code": 200, "data": {"status": "3"')],
            "not JSON",
            id="invalid-json-200",
            marks=pytest.mark.fault(AREA, "HTML or invalid JSON with HTTP 200", STAYS_PENDING),
        ),
        pytest.param(
            lambda feed: [Fault(body=b'{"code": 200, "msg": "success"}')],
            "no `data`",
            id="data-missing",
            marks=pytest.mark.fault(AREA, "`data` missing or null", STAYS_PENDING),
        ),
        pytest.param(
            lambda feed: [Fault.answer(None)],
            "no `data`",
            id="data-null",
            marks=pytest.mark.fault(AREA, "`data` missing or null", STAYS_PENDING),
        ),
        pytest.param(
            lambda feed: [Fault(body=json.dumps({"code": 200, "data": {"pad": "x" * 2_000_000}}).encode())],
            "larger than",
            id="gigantic-body",
            marks=pytest.mark.fault(AREA, "gigantic body (2 MB)", STAYS_PENDING + "; at most 1 MiB read"),
        ),
        pytest.param(
            lambda feed: [_answer(feed, "task", task_id="someone-else")],
            "another task",
            id="answer-for-another-task",
            marks=pytest.mark.fault(AREA, "an answer for another task id", STAYS_PENDING),
        ),
    ],
)
def test_unusable_answers_leave_the_task_pending(
    archive: Archive,
    feed: FeedEmulator,
    minutes: Minutes,
    make_faults: Callable[[FeedEmulator], list[Fault]],
    error_part: str,
) -> None:
    feed.add_task("task", "3")
    feed.fail_feed("task", *make_faults(feed))
    archive.register("task")

    first = archive.run(minutes(0))

    assert first["poll_errors"] == 1
    item = archive.item("task")
    assert item["status"] == "PENDING"
    assert error_part in item["last_error"]
    assert archive.events() == []
    [logged] = [line for line in archive.logs() if line["message"] == "poll failed"]
    assert logged["task_id"] == "task"
    assert archive.run(minutes(1))["archived"] == 1
    assert len(archive.events()) == 1


@pytest.mark.fault(AREA, "connection refused", STAYS_PENDING)
def test_a_refused_connection_leaves_the_task_pending(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "3")
    archive.register("task")

    first = archive.run(minutes(0), env={"COMETAPI_BASE_URL": f"http://127.0.0.1:{free_port()}"})

    assert first["poll_errors"] == 1
    assert "unreachable" in archive.item("task")["last_error"]
    assert archive.run(minutes(1))["archived"] == 1


STILL_RUNNING = "not an outcome: task stays PENDING, the oddity logged; polled again"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param(
            {"status": "7", "state": "throttled"},
            id="unknown-status",
            marks=pytest.mark.fault(AREA, "unknown status", STILL_RUNNING),
        ),
        pytest.param(
            {"state": "succeeded", "video_url": None},
            id="success-without-video",
            marks=pytest.mark.fault(AREA, "success without `video_url`", STILL_RUNNING),
        ),
    ],
)
def test_odd_answers_are_read_as_still_running(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, changes: dict[str, object]
) -> None:
    feed.add_task("task", "3")
    feed.fail_feed("task", _answer(feed, "task", **changes))
    archive.register("task")

    first = archive.run(minutes(0))

    assert first["still_pending"] == 1
    assert first["poll_errors"] == 0
    assert archive.item("task")["status"] == "PENDING"
    assert any(line["message"] == "feed answer read with care" for line in archive.logs())
    assert archive.run(minutes(1))["archived"] == 1


@pytest.mark.fault(AREA, "`status` as a number", "read as the string it stands for; archived")
def test_a_numeric_status_is_understood(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "3")
    feed.fail_feed("task", _answer(feed, "task", status=3, state=""))
    archive.register("task")

    assert archive.run(minutes(0))["archived"] == 1


CONFIGURATION = "configuration error: the run stops claiming, every task stays PENDING, nothing retried"


@pytest.mark.parametrize(
    ("fault", "reason_part"),
    [
        pytest.param(
            Fault.http(401),
            "HTTP 401",
            id="401",
            marks=pytest.mark.fault(AREA, "401", CONFIGURATION + "; the key never logged"),
        ),
        pytest.param(Fault.http(403), "HTTP 403", id="403", marks=pytest.mark.fault(AREA, "403", CONFIGURATION)),
        pytest.param(
            Fault(
                status=301,
                body=b"<html>Moved</html>",
                content_type="text/html",
                headers={"Location": "https://example.invalid/runway/feed"},
            ),
            "HTTP 301",
            id="301-to-html",
            marks=pytest.mark.fault(AREA, "301 to an HTML page", CONFIGURATION + "; the redirect is not followed"),
        ),
    ],
)
def test_configuration_errors_stop_the_run_and_lose_nothing(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, fault: Fault, reason_part: str
) -> None:
    for n in range(3):
        feed.add_task(f"task-{n}", "3")
        feed.fail_feed(f"task-{n}", fault)
    archive.register("task-0", "task-1", "task-2")

    summary = archive.run(minutes(0), env={"POLL_CONCURRENCY": "1"})

    assert reason_part in summary["configuration_error"]
    assert summary["poll_errors"] == 1
    assert summary["left_for_next_run"] == 2
    assert [archive.item(f"task-{n}")["status"] for n in range(3)] == ["PENDING"] * 3
    assert sum(feed.polls(f"task-{n}") for n in range(3)) == 1
    assert API_KEY not in archive.log_stream.getvalue()
    assert [r for r in feed.requests if r[0] == "GET"] == []


PERSISTENT = (
    "PENDING with failing_since; still refused after the grace period (60 min): FAILED with the reason, announced"
)


@pytest.mark.parametrize(
    ("fault", "reason_part"),
    [
        pytest.param(Fault.http(400), "HTTP 400", id="400", marks=pytest.mark.fault(AREA, "400", PERSISTENT)),
        pytest.param(
            Fault.application_error(404, "task not found"),
            "code 404",
            id="code-404",
            marks=pytest.mark.fault(AREA, "valid JSON with `code` != 200", PERSISTENT),
        ),
    ],
)
def test_a_task_the_feed_keeps_refusing_fails_after_the_grace_period(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, fault: Fault, reason_part: str
) -> None:
    feed.add_task("task", "3")
    feed.fail_feed("task", fault, fault, fault)
    archive.register("task")

    archive.run(minutes(0))
    archive.run(minutes(30))
    assert archive.item("task")["status"] == "PENDING"
    assert int(archive.item("task")["failing_since"]) > 0
    summary = archive.run(minutes(61))

    assert summary["failed"] == 1
    item = archive.item("task")
    assert item["status"] == "FAILED"
    assert reason_part in item["error"]
    assert "for over 60 min" in item["error"]
    [event] = archive.events()
    assert event["type"] == "runway.task.failed"


@pytest.mark.fault(AREA, "a refusal that clears before the grace period", "the grace clock is reset; archived")
def test_a_refusal_that_clears_does_not_fail_the_task(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    feed.add_task("task", "1 1 3")
    feed.fail_feed("task", Fault.application_error())
    archive.register("task")

    archive.run(minutes(0))
    archive.run(minutes(1))
    assert "failing_since" not in archive.item("task")
    archive.run(minutes(90))

    assert archive.item("task")["status"] == "PENDING"
    assert archive.run(minutes(91))["archived"] == 1


def _strict_json(text: bytes | str) -> object:
    def refuse(word: str) -> object:
        raise ValueError(f"not JSON: {word}")

    return json.loads(text, parse_constant=refuse)


# Python's JSON reader takes all of these; DynamoDB holds none of them as a number, JSON has no NaN.
ODD_NUMBERS = (
    b'"point": NaN, "odd": {"nan": NaN, "inf": Infinity, "minus_inf": -Infinity, "big": 1e400, '
    b'"long": 123456789012345678901234567890123456789, "fine": 2.5}'
)
ODD_AS_STORED = {
    "nan": "NaN",
    "inf": "Infinity",
    "minus_inf": "-Infinity",
    "big": "Infinity",
    "long": "123456789012345678901234567890123456789",
}


def _with_odd_numbers(feed: FeedEmulator, status: str) -> Fault:
    data = dict(feed.task_data(feed.tasks["task"], status))
    data.pop("point")
    text = json.dumps({"code": 200, "msg": "success", "data": data}).encode()
    return Fault(body=text[:-2] + b", " + ODD_NUMBERS + b"}}")


@pytest.mark.fault(
    AREA,
    "numbers JSON readers take but DynamoDB cannot hold (NaN, ±Infinity, 1e400, a 39-digit integer)",
    "kept as their JSON text (strings) in the item, the manifest and the event; polled and archived as usual; "
    "manifest and event strict JSON",
)
def test_numbers_dynamodb_cannot_hold_are_kept_as_text_and_the_task_archives(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task", "1 3")
    feed.fail_feed("task", _with_odd_numbers(feed, "1"), _with_odd_numbers(feed, "3"))
    archive.register("task")

    first = archive.run(minutes(0))

    assert (first["still_pending"], first["task_errors"]) == (1, 0)
    pending = archive.item("task")
    assert pending["status"] == "PENDING" and pending["point"] == "NaN"
    assert pending["provider"]["odd"] == {**ODD_AS_STORED, "fine": Decimal("2.5")}

    assert archive.run(minutes(1))["archived"] == 1

    item = archive.item("task")
    assert item["status"] == "ARCHIVED"
    assert item["provider"]["odd"] == {**ODD_AS_STORED, "fine": Decimal("2.5")}
    manifest = _strict_json(archive.object_bytes(item["manifest"]["key"]))
    assert isinstance(manifest, dict)
    assert manifest["provider_answer"]["odd"] == {**ODD_AS_STORED, "fine": 2.5}
    assert manifest["provider_answer"]["point"] == "NaN"
    [event] = archive.events()
    assert event["type"] == "runway.task.archived"
    assert event["data"]["provider"]["odd"] == {**ODD_AS_STORED, "fine": 2.5}
    _strict_json(item["event"])  # the outbox copy, as published
