"""Every family's sample answers in events/feed/<family>/, read into the archiver's model by its module.

Each family is one module in runway_archiver_lambda/feed/families/ with one folder of samples here;
a sample added without a case below fails `test_every_family_sample_is_pinned_by_a_case_here`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runway_archiver_lambda.feed import FeedError, FeedErrorKind, Progress, families, family_named, status_word
from runway_archiver_lambda.feed.families.runway import dialect_of

FEED = Path(__file__).resolve().parents[2] / "events" / "feed"
BASE = "https://api.cometapi.com"
Q, R, S, F, U = Progress.QUEUED, Progress.RUNNING, Progress.SUCCEEDED, Progress.FAILED, Progress.UNKNOWN

# family, sample, progress, outputs, poster?, last frame?, provider's progress, failure recorded (or None)
EXPECTED: list[tuple[str, str, Progress, int, bool, bool, str | None, str | None]] = [
    ("kling", "queued.json", Q, 0, False, False, None, None),
    ("kling", "running.json", R, 0, False, False, None, None),
    ("kling", "succeeded.json", S, 1, False, False, None, None),
    ("kling", "succeeded-two-videos.json", S, 2, False, False, None, None),
    ("kling", "failed.json", F, 0, False, False, None, "Failure to pass the risk control system"),
    ("kling", "envelope-succeeded.json", S, 1, False, False, "100%", None),
    ("sora", "queued.json", Q, 0, False, False, "0%", None),
    ("sora", "running.json", R, 0, False, False, "0%", None),
    ("sora", "running-progress.json", R, 0, False, False, "45%", None),
    ("sora", "succeeded.json", S, 1, True, False, "100%", None),
    (
        "sora",
        "failed.json",
        F,
        0,
        False,
        False,
        "0%",
        "Your request was blocked by our moderation system. (moderation_blocked)",
    ),
    ("veo", "queued.json", Q, 0, False, False, "0%", None),
    ("veo", "running.json", R, 0, False, False, "50%", None),
    ("veo", "succeeded.json", S, 1, False, False, "100%", None),
    ("veo", "failed.json", F, 0, False, False, "100%", "provider reported failure"),
    (
        "veo",
        "failed-with-error.json",
        F,
        0,
        False,
        False,
        "100%",
        "The prompt could not be submitted. It may violate our policies. (failed)",
    ),
    ("luma", "queued.json", Q, 0, False, False, None, None),
    ("luma", "running.json", R, 0, False, False, None, None),
    ("luma", "succeeded.json", S, 2, True, True, None, None),
    ("luma", "failed.json", F, 0, False, False, None, "Prompt not allowed because it contains disallowed content"),
    ("luma", "official-queued.json", Q, 0, False, False, None, None),
    ("luma", "official-running.json", R, 0, False, False, None, None),
    ("luma", "official-succeeded.json", S, 1, True, False, None, None),
    ("luma", "official-failed.json", F, 0, False, False, None, "400: prompt not allowed"),
    ("minimax", "preparing.json", Q, 0, False, False, None, None),
    ("minimax", "queued.json", Q, 0, False, False, None, None),
    ("minimax", "running.json", R, 0, False, False, None, None),
    ("minimax", "succeeded.json", S, 1, False, False, None, None),
    ("minimax", "failed.json", F, 0, False, False, None, "output video sensitive (1027)"),
    ("minimax", "envelope-succeeded.json", S, 1, False, False, "100%", None),
    ("seedance", "volc-queued.json", Q, 0, False, False, None, None),
    ("seedance", "volc-running.json", R, 0, False, False, None, None),
    ("seedance", "volc-succeeded.json", S, 1, False, False, None, None),
    ("seedance", "volc-succeeded-last-frame.json", S, 1, False, True, None, None),
    (
        "seedance",
        "volc-failed.json",
        F,
        0,
        False,
        False,
        None,
        "The request failed because the output video may contain sensitive information. "
        "(OutputVideoSensitiveContentDetected)",
    ),
    ("seedance", "v1-queued.json", Q, 0, False, False, "0%", None),
    ("seedance", "v1-queued-lowercase.json", Q, 0, False, False, "0%", None),
    ("seedance", "v1-running.json", R, 0, False, False, "45%", None),
    ("seedance", "v1-succeeded.json", S, 1, False, False, "100%", None),
    ("seedance", "v1-succeeded-lowercase.json", S, 1, False, False, "100%", None),
    ("seedance", "v1-failed.json", F, 0, False, False, "100%", "provider reported failure"),
    ("seedance", "v1-error.json", F, 0, False, False, "100%", "an internal error prevented completion (ERROR)"),
    ("seedance", "callback-completed.json", S, 1, False, False, "100%", None),  # a callback's body
]
# Bodies that are not a task query's answer: what the media lookups answer (the emulator serves them).
MEDIA_LOOKUPS = {("sora", "content-not-ready.json"), ("minimax", "files-retrieve.json")}


def body(family: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FEED / family / name).read_text())
    return loaded


def task_id_of(answer: dict[str, Any]) -> str:
    data = answer["data"] if isinstance(answer.get("data"), dict) else answer
    return str(data.get("task_id") or data.get("id"))


def test_every_family_sample_is_pinned_by_a_case_here() -> None:
    pinned = {(family, name) for family, name, *_ in EXPECTED} | MEDIA_LOOKUPS
    found = {(path.parent.name, path.name) for path in FEED.glob("*/*.json")}
    assert pinned == found


def test_every_sample_folder_is_a_family_and_every_family_but_runway_has_one() -> None:
    folders = {path.name for path in FEED.iterdir() if path.is_dir()}
    assert folders == set(families()) - {"runway"}  # Runway's samples are events/feed/*.json


@pytest.mark.parametrize(
    ("family", "sample", "progress", "outputs", "poster", "last_frame", "provider_progress", "failure"), EXPECTED
)
def test_each_familys_samples_are_read_into_the_archivers_model(
    family: str,
    sample: str,
    progress: Progress,
    outputs: int,
    poster: bool,
    last_frame: bool,
    provider_progress: str | None,
    failure: str | None,
) -> None:
    module = family_named(family)
    assert module is not None
    answer = body(family, sample)

    read = module.read_answer(task_id_of(answer), answer, base_url=BASE)

    assert read.progress is progress
    assert read.family == family
    assert len(read.video_urls) == outputs
    assert (read.poster_url is not None, read.last_frame_url is not None) == (poster, last_frame)
    assert read.provider_progress == provider_progress
    if failure is not None:
        assert read.failure == failure
    assert not read.note  # every word in the samples is known


def test_sora_and_veo_media_are_the_apis_content_endpoint() -> None:
    sora, veo = family_named("sora"), family_named("veo")
    assert sora is not None and veo is not None
    read = sora.read_answer("video_69b25d5f467c81908733a56bc236b4df", body("sora", "succeeded.json"), base_url=BASE)
    assert read.video_url == f"{BASE}/v1/videos/video_69b25d5f467c81908733a56bc236b4df/content"
    assert read.poster_url == f"{BASE}/v1/videos/video_69b25d5f467c81908733a56bc236b4df/content?variant=thumbnail"
    assert read.media_through_api and sora.media_through_api and veo.media_through_api
    assert not any(family_named(name).media_through_api for name in ("kling", "luma", "minimax", "seedance", "runway"))  # type: ignore[union-attr]


def test_luma_prefers_the_download_url_and_keeps_the_raw_copy_as_a_further_output() -> None:
    luma = family_named("luma")
    assert luma is not None
    sample = body("luma", "succeeded.json")
    read = luma.read_answer(sample["id"], sample)
    assert read.video_urls == (sample["video"]["download_url"], sample["video_raw"]["url"])
    assert (read.poster_url, read.last_frame_url) == (sample["thumbnail"]["url"], sample["last_frame"]["url"])


def test_a_minimax_success_names_the_files_retrieve_lookup_until_it_is_resolved() -> None:
    minimax = family_named("minimax")
    assert minimax is not None
    read = minimax.read_answer("176843862716480", body("minimax", "succeeded.json"), base_url=BASE)
    assert read.video_url == f"{BASE}/minimax/v1/files/retrieve?file_id=176844028768320"
    resolved = minimax.resolve_media(read, lambda url: body("minimax", "files-retrieve.json"))
    assert resolved.video_url == body("minimax", "files-retrieve.json")["file"]["download_url"]
    with pytest.raises(FeedError) as refused:
        minimax.resolve_media(read, lambda url: {"base_resp": {"status_code": 1004, "status_msg": "auth failed"}})
    assert "auth failed (1004)" in refused.value.reason
    # the envelope's `fail_reason` holds the file id on success: not a failure, and not the video
    envelope = minimax.read_answer("306792606023824", body("minimax", "envelope-succeeded.json"), base_url=BASE)
    assert envelope.video_url == "https://cdn.example.com/minimax/output.mp4"


def test_seedance_asks_the_route_its_id_came_from() -> None:
    seedance = family_named("seedance")
    assert seedance is not None
    from runway_archiver_lambda.feed import Provider

    assert seedance.query("task_abc123", Provider.COMETAPI).path == "/v1/videos/task_abc123"
    assert seedance.query("cgt-20260611", Provider.COMETAPI).path == "/volc/v3/contents/generations/tasks/cgt-20260611"


def test_a_kling_answer_with_a_query_error_code_raises() -> None:
    kling = family_named("kling")
    assert kling is not None
    with pytest.raises(FeedError) as refused:
        kling.read_answer("1", {"code": 1201, "message": "task not found", "data": None})
    assert refused.value.kind is FeedErrorKind.APPLICATION


@pytest.mark.parametrize(
    ("family", "word"),
    [("kling", "rendering"), ("sora", "paused"), ("luma", "mystery"), ("minimax", "Waiting"), ("seedance", "held")],
)
def test_an_unknown_word_keeps_polling_and_is_noted(family: str, word: str) -> None:
    module = family_named(family)
    assert module is not None
    status = {"kling": "task_status", "luma": "state"}.get(family, "status")
    task = {"kling": {"task_id": "t", "task_status": word}, "luma": {"id": "t", "state": word}}.get(
        family, {"id": "t", "object": "video", "base_resp": {"status_code": 0}, status: word}
    )
    read = module.classify("t", task, base_url=BASE)
    assert read.progress is U
    assert repr(word) in read.note


# -- status words as they come -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("word", "expected"),
    [(" SUCCEEDED ", "SUCCEEDED"), ("Succeeded", "SUCCEEDED"), ("in_progress", "IN_PROGRESS"),
     ("IN PROGRESS", "IN_PROGRESS"), ("in-progress", "IN_PROGRESS"), ("", ""), (None, "")],
)  # fmt: skip
def test_status_words_are_read_whatever_their_case_and_spacing(word: str | None, expected: str) -> None:
    assert status_word(word) == expected


@pytest.mark.parametrize(
    ("data", "progress"),
    [
        ({"task_id": "t", "status": " SUCCESS ", "result_url": "https://cdn.example.com/v.mp4"}, S),
        ({"task_id": "t", "status": "Success", "result_url": "https://cdn.example.com/v.mp4"}, S),
        ({"task_id": "t", "status": "in_progress", "progress": "40%"}, R),
        ({"task_id": "t", "status": "IN PROGRESS", "progress": "40%"}, R),
        ({"task_id": "t", "status": "not start"}, Q),
        ({"id": "t", "status": " SUCCEEDED ", "output": ["https://cdn.example.com/v.mp4"]}, S),
        ({"id": "t", "status": "Succeeded", "output": ["https://cdn.example.com/v.mp4"]}, S),
        ({"id": "t", "status": "Cancelled"}, F),
    ],
)
def test_the_envelope_and_runway_dialects_read_odd_case_and_spacing(data: dict[str, Any], progress: Progress) -> None:
    runway = family_named("runway")
    assert runway is not None
    read = runway.classify("t", data)
    assert read.progress is progress
    assert not read.note


def test_a_word_with_spaces_still_names_its_dialect() -> None:
    assert dialect_of({"status": "IN PROGRESS"}).value == "task-envelope"
    assert dialect_of({"status": " succeeded "}).value == "runway-task"
