"""The emulator's answers for the model families other than Runway, built from their samples.

Each family's query path answers with the sample of `events/feed/<family>/` for the task's step
(queued, running, succeeded, failed), its id and media URLs replaced by the emulated task's: the
emulator answers as the samples do, and a sample that changes changes the emulator with it.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable

SAMPLES = Path(__file__).resolve().parents[3] / "events" / "feed"
UNKNOWN_WORD = "mystery_state"  # what an `unknown` step says, in every family


@dataclass(frozen=True)
class Route:
    """A request the emulator recognised: whose path it is, and the id it names."""

    family: str  # a family, or "content" (the videos' content endpoint), "retrieve" (MiniMax's files)
    task_id: str
    variant: str | None = None  # the content endpoint's ?variant=


_PATHS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/kling/v1/videos/[\w-]+/(?P<id>[^/?]+)$"), "kling"),
    (re.compile(r"^/v1/videos/(?P<id>[^/?]+)/content$"), "content"),
    (re.compile(r"^/v1/videos/(?P<id>[^/?]+)$"), "videos"),  # Sora, Veo, Seedance's gateway ids
    (re.compile(r"^/dream-machine/v1/generations/(?P<id>[^/?]+)$"), "luma"),
    (re.compile(r"^/volc/v3/contents/generations/tasks/(?P<id>[^/?]+)$"), "seedance"),
]


def route_of(path: str) -> Route | None:
    """The family query (or media lookup) a GET path is, or None (a media file, or nothing)."""
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    if parts.path == "/minimax/v1/query/video_generation" and query.get("task_id"):
        return Route("minimax", query["task_id"][0])
    if parts.path == "/minimax/v1/files/retrieve" and query.get("file_id"):
        return Route("retrieve", query["file_id"][0])
    for pattern, family in _PATHS:
        match = pattern.match(parts.path)
        if match:
            return Route(family, unquote(match["id"]), query.get("variant", [""])[0] or None)
    return None


# step -> the sample each family answers with
STEP_SAMPLES: dict[str, dict[str, str]] = {
    "kling": {
        "queued": "queued.json",
        "running": "running.json",
        "succeeded": "succeeded.json",
        "failed": "failed.json",
    },
    "sora": {
        "queued": "queued.json",
        "running": "running-progress.json",
        "succeeded": "succeeded.json",
        "failed": "failed.json",
    },
    "veo": {"queued": "queued.json", "running": "running.json", "succeeded": "succeeded.json", "failed": "failed.json"},
    "luma": {
        "queued": "queued.json",
        "running": "running.json",
        "succeeded": "succeeded.json",
        "failed": "failed.json",
    },
    "minimax": {
        "queued": "queued.json",
        "running": "running.json",
        "succeeded": "succeeded.json",
        "failed": "failed.json",
    },
    "seedance": {
        "queued": "volc-queued.json",
        "running": "volc-running.json",
        "succeeded": "volc-succeeded-last-frame.json",
        "failed": "volc-failed.json",
    },
}
FAMILIES = tuple(STEP_SAMPLES)
CONTENT_FAMILIES = ("sora", "veo")  # media from the authenticated content endpoint
# The status field each family's sample says its word in (for an `unknown` step).
_STATUS_FIELD = {"kling": ("data", "task_status"), "luma": ("state",)}


def sample(family: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SAMPLES / family / name).read_text())
    return loaded


@dataclass(frozen=True)
class Media:
    """The emulated task's media URLs on the CDN, by role."""

    videos: list[str]
    poster: str | None
    last_frame: str | None


def answer(family: str, task_id: str, step: str, media: Media) -> dict[str, Any]:
    """The body the family's query answers at this step (queued, throttled, running, succeeded, failed...)."""
    word = {"throttled": "queued", "cancelled": "failed", "unknown": "running"}.get(step, step)
    body = copy.deepcopy(sample(family, STEP_SAMPLES[family][word]))
    _DRESS[family](body, task_id, media if word == "succeeded" else None)
    if step == "unknown":
        path = _STATUS_FIELD.get(family, ("status",))
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = UNKNOWN_WORD
    return body


ENVELOPE_FAMILIES = ("kling", "minimax")  # also met inside the gateway's task envelope
_ENVELOPE_WORDS = {"queued": "QUEUED", "running": "IN_PROGRESS", "succeeded": "SUCCESS", "failed": "FAILURE"}
_ACTIONS = {"kling": "OMNI_VIDEO", "minimax": "video_generation"}


def enveloped(family: str, task_id: str, step: str, native: dict[str, Any], media: Media) -> dict[str, Any]:
    """The gateway's task envelope around the family's own object (Kling's Omni page; MiniMax on the gateway).

    As the gateway's examples show it: MiniMax's object nested with its file already retrieved, and the
    file id in `fail_reason` on success (the gateway's historical use of that field).
    """
    word = {"throttled": "queued", "cancelled": "failed"}.get(step, step)
    nested = native["data"] if family == "kling" else native
    reason = ""
    if family == "minimax" and word == "succeeded":
        nested = {
            **nested,
            "file": {**sample("minimax", "files-retrieve.json")["file"], "download_url": media.videos[0]},
        }
        reason = str(nested.get("file_id", ""))
    elif word == "failed":
        reason = str(nested.get("task_status_msg") or (nested.get("base_resp") or {}).get("status_msg") or "failed")
    return {
        "code": "success",
        "message": "",
        "data": {
            "task_id": task_id,
            "action": _ACTIONS[family],
            "status": _ENVELOPE_WORDS.get(word, "UNKNOWN"),
            "fail_reason": reason,
            "submit_time": 1773366766,
            "start_time": 0 if word == "queued" else 1773366770,
            "finish_time": 1773366890 if word in ("succeeded", "failed") else 0,
            "progress": {"running": "50%", "succeeded": "100%", "failed": "100%"}.get(word, "0%"),
            "data": nested,
        },
    }


def retrieve_answer(task_id: str, video: str) -> dict[str, Any]:
    """MiniMax's files/retrieve answer for the task's file (its id is the task's)."""
    body = copy.deepcopy(sample("minimax", "files-retrieve.json"))
    body["file"]["file_id"] = task_id
    body["file"]["download_url"] = video
    return body


def content_not_ready(status: str) -> dict[str, Any]:
    body = copy.deepcopy(sample("sora", "content-not-ready.json"))
    body["error"]["message"] = f"Task is not completed yet, current status: {status.upper()}"
    return body


def _kling(body: dict[str, Any], task_id: str, media: Media | None) -> None:
    body["data"]["task_id"] = task_id
    if media:
        template = body["data"]["task_result"]["videos"][0]
        body["data"]["task_result"]["videos"] = [
            {**template, "id": f"{task_id}-{n}", "url": url} for n, url in enumerate(media.videos)
        ]


def _openai_video(body: dict[str, Any], task_id: str, media: Media | None) -> None:
    body["id"] = task_id
    if "task_id" in body:
        body["task_id"] = task_id


def _luma(body: dict[str, Any], task_id: str, media: Media | None) -> None:
    body["id"] = task_id
    if media:
        body["video"].update(url=media.videos[0], download_url=media.videos[0])
        if len(media.videos) > 1:
            body["video_raw"]["url"] = media.videos[1]
        else:
            body["video_raw"] = None
        body["thumbnail"] = {**body["thumbnail"], "url": media.poster} if media.poster else None
        body["last_frame"] = {**body["last_frame"], "url": media.last_frame} if media.last_frame else None


def _minimax(body: dict[str, Any], task_id: str, media: Media | None) -> None:
    body["task_id"] = task_id
    if media:
        body["file_id"] = task_id  # files/retrieve answers for it


def _seedance(body: dict[str, Any], task_id: str, media: Media | None) -> None:
    body["id"] = task_id
    if media:
        body["content"]["video_url"] = media.videos[0]
        if media.last_frame:
            body["content"]["last_frame_url"] = media.last_frame
        else:
            body["content"].pop("last_frame_url", None)


_DRESS: dict[str, Callable[[dict[str, Any], str, Media | None], None]] = {
    "kling": _kling,
    "sora": _openai_video,
    "veo": _openai_video,
    "luma": _luma,
    "minimax": _minimax,
    "seedance": _seedance,
}
