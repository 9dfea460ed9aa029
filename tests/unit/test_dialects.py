"""Every sample answer in events/feed/, of every dialect and status, read into the archiver's model.

The samples are shaped on the documented examples (FEED_API.md): the 2024 page, today's task
envelope with Runway's task (or the 2024 object) nested in it, and Runway's bare task object.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runway_archiver_lambda.feed import Dialect, FeedError, FeedErrorKind, Progress, Provider, read_answer

FEED = Path(__file__).resolve().parents[2] / "events" / "feed"
ENVELOPE_TASK = "3d957031-9a2a-45e2-9dc7-bc8513059c50"
Q, R, S, F, U = Progress.QUEUED, Progress.RUNNING, Progress.SUCCEEDED, Progress.FAILED, Progress.UNKNOWN
ENV, RUNWAY, OLD = Dialect.TASK_ENVELOPE, Dialect.RUNWAY_TASK, Dialect.FEED_2024


def body(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FEED / name).read_text())
    return loaded


def task_id_of(answer: dict[str, Any]) -> str:
    data = answer.get("data", answer)
    return str(data.get("task_id") or data.get("id"))


# sample, dialect, progress, outputs archived, provider's progress, failure recorded (or None)
EXPECTED = [
    ("queued.json", OLD, Q, 0, None, None),
    ("running.json", OLD, R, 0, None, None),
    ("succeeded.json", OLD, S, 1, None, None),
    ("succeeded-legacy.json", OLD, S, 1, None, None),
    ("succeeded-video-only.json", OLD, S, 1, None, None),
    ("failed.json", OLD, F, 0, None, "Generation failed: content moderation"),
    ("reseller-contradiction.json", OLD, F, 1, None, "failed after upload"),
    ("succeeded-without-video.json", OLD, U, 0, None, None),
    ("unknown-status.json", OLD, U, 0, None, None),
    ("envelope-not-start.json", ENV, Q, 0, "0%", None),
    ("envelope-submitted.json", ENV, Q, 0, "0%", None),
    ("envelope-queued.json", ENV, Q, 0, "0%", None),
    ("envelope-throttled.json", ENV, Q, 0, "0%", None),
    ("envelope-in-progress.json", ENV, R, 0, "40%", None),
    ("envelope-success.json", ENV, S, 1, "100%", None),
    ("envelope-success-two-outputs.json", ENV, S, 2, "100%", None),
    ("envelope-success-without-media.json", ENV, U, 0, "100%", None),
    (
        "envelope-failure.json",
        ENV,
        F,
        0,
        "100%",
        "Your prompt was flagged by our content moderation. (SAFETY.INPUT.TEXT)",
    ),
    ("envelope-cancelled.json", ENV, F, 0, "0%", "cancelled"),
    ("envelope-unknown.json", ENV, U, 0, "0%", None),
    ("envelope-with-2024-object.json", ENV, S, 1, "100%", None),
    ("envelope-disagree-upstream-finished.json", ENV, S, 1, "90%", None),
    ("envelope-disagree-envelope-finished.json", ENV, S, 1, "100%", None),
    (
        "envelope-disagree-both-finished.json",
        ENV,
        F,
        1,
        "100%",
        "An unexpected error occurred. (INTERNAL.BAD_OUTPUT.CODE01)",
    ),
    ("runway-pending.json", RUNWAY, Q, 0, None, None),
    ("runway-throttled.json", RUNWAY, Q, 0, None, None),
    ("runway-running.json", RUNWAY, R, 0, "40%", None),
    ("runway-succeeded.json", RUNWAY, S, 1, "100%", None),
    ("runway-succeeded-two-outputs.json", RUNWAY, S, 2, "100%", None),
    ("runway-succeeded-without-output.json", RUNWAY, U, 0, "100%", None),
    ("runway-failed.json", RUNWAY, F, 0, None, "An unexpected error occurred. (INTERNAL.BAD_OUTPUT.CODE01)"),
    ("runway-cancelled.json", RUNWAY, F, 0, None, "cancelled"),
    ("runway-unknown-status.json", RUNWAY, U, 0, None, None),
]
ERRORS = {"envelope-task-not-exist.json", "runway-not-found.json", "application-error.json", "error-401.json"}


def test_every_sample_answer_is_pinned_by_a_case_here() -> None:
    assert {case[0] for case in EXPECTED} | ERRORS == {path.name for path in FEED.glob("*.json")}


@pytest.mark.parametrize(("sample", "dialect", "progress", "outputs", "provider_progress", "failure"), EXPECTED)
def test_each_dialect_and_status_is_read_into_the_archivers_model(
    sample: str, dialect: Dialect, progress: Progress, outputs: int, provider_progress: str | None, failure: str | None
) -> None:
    answer = body(sample)
    provider = Provider.RUNWAY if sample.startswith("runway-") else Provider.COMETAPI

    read = read_answer(task_id_of(answer), answer, provider)

    assert read.dialect is dialect
    assert read.progress is progress
    assert len(read.video_urls) == outputs
    assert read.provider_progress == provider_progress
    assert read.provider is provider
    if failure is not None:
        assert read.failure == failure
    if progress is U or "disagree" in sample:
        assert read.note  # read with care: logged


def test_the_video_comes_from_result_url_then_output_then_video_url() -> None:
    two = read_answer(ENVELOPE_TASK, body("envelope-success-two-outputs.json"))
    assert two.video_url is not None and two.video_url.split("?")[0].endswith("/video.mp4")
    assert two.video_urls[1].split("?")[0].endswith("/video_2.mp4")
    nested_only = read_answer(ENVELOPE_TASK, body("envelope-disagree-upstream-finished.json"))
    assert nested_only.video_url == body("envelope-disagree-upstream-finished.json")["data"]["data"]["output"][0]
    with_2024 = read_answer(ENVELOPE_TASK, body("envelope-with-2024-object.json"))
    # poster and last frame wherever an object carries them: here, the nested 2024 object
    assert with_2024.poster_url is not None and with_2024.poster_url.endswith(".png")
    assert with_2024.last_frame_url is not None
    assert with_2024.facts["prompt"] == "a cat"


def test_disagreements_follow_one_rule() -> None:
    # a terminal word beats one that is not terminal, whichever layer says it
    assert read_answer(ENVELOPE_TASK, body("envelope-disagree-upstream-finished.json")).progress is S
    assert read_answer(ENVELOPE_TASK, body("envelope-disagree-envelope-finished.json")).progress is S
    # both terminal: the upstream's own word wins, as `state` wins over `status` in the 2024 page
    both = read_answer(ENVELOPE_TASK, body("envelope-disagree-both-finished.json"))
    assert both.progress is F
    assert "upstream's own word wins" in both.note


def test_more_outputs_than_the_limit_are_cut_and_noted() -> None:
    urls = [f"https://cdn.example.com/{n}.mp4" for n in range(15)]
    read = read_answer("t", {"id": "t", "status": "SUCCEEDED", "output": urls}, Provider.RUNWAY)
    assert len(read.video_urls) == 10
    assert "5 more output URL(s)" in read.note


@pytest.mark.parametrize(
    ("sample", "kind"),
    [
        ("envelope-task-not-exist.json", FeedErrorKind.TASK_NOT_FOUND),
        ("application-error.json", FeedErrorKind.APPLICATION),
    ],
)
def test_error_envelopes_raise_with_the_providers_code(sample: str, kind: FeedErrorKind) -> None:
    with pytest.raises(FeedError) as raised:
        read_answer("a4a12768-abe4-4f16-8eb1-a9dc834649aa", body(sample))
    assert raised.value.kind is kind


def test_an_envelope_answering_for_another_task_is_malformed() -> None:
    with pytest.raises(FeedError) as raised:
        read_answer("another-task", body("envelope-success.json"))
    assert raised.value.kind is FeedErrorKind.MALFORMED
    with pytest.raises(FeedError):
        read_answer("another-task", body("runway-succeeded.json"), Provider.RUNWAY)
