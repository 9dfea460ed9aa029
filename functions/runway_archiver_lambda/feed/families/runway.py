"""Runway: CometAPI's feed (`POST {base}/runway/feed`) in both its dialects, and Runway's own API.

FEED_API.md is the contract. The same task reaches us in three shapes, recognised by shape and
never configured:

- the 2024 page (`feed-2024`): `{code: 200, data: {status: "0".."3", state?, video_url, poster, ...}}`;
  prefer a known `state`; "3" is success only with a `video_url`;
- today's task envelope (`task-envelope`): `{code: "success", data: {status: QUEUED|IN_PROGRESS|
  SUCCESS|FAILURE|..., progress: "40%", result_url, fail_reason, data: <the upstream's own task>}}`;
- Runway's own task object (`runway-task`): `{id, status: PENDING|THROTTLED|RUNNING|SUCCEEDED|
  FAILED|CANCELLED, progress: 0..1, output: [urls], failure, failureCode}`, bare from Runway's API
  (`GET {RunwayApiBaseUrl}/v1/tasks/{id}`) or nested in the envelope.

Media: public URLs on Runway's or the reseller's CDN, fetched without a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ..family import Family, Query
from ..model import (
    ENVELOPE_MARKERS,
    ENVELOPE_STATUSES,
    Dialect,
    FeedError,
    FeedErrorKind,
    NativeDialect,
    Progress,
    Provider,
    Reading,
    percentage,
    progress_of,
    raise_for_error_envelope,
    read_envelope,
    status_word,
    text_or_none,
    texts,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

_STATE_WORDS = {
    "pending": Progress.QUEUED,
    "queued": Progress.QUEUED,
    "running": Progress.RUNNING,
    "processing": Progress.RUNNING,
    "succeeded": Progress.SUCCEEDED,
    "failed": Progress.FAILED,
}
_STATUS_CODES = {
    "0": Progress.QUEUED,
    "1": Progress.RUNNING,
    "2": Progress.FAILED,
    "3": Progress.SUCCEEDED,
}
RUNWAY_STATUSES = {
    "PENDING": Progress.QUEUED,
    "THROTTLED": Progress.QUEUED,
    "RUNNING": Progress.RUNNING,
    "SUCCEEDED": Progress.SUCCEEDED,
    "FAILED": Progress.FAILED,
    "CANCELLED": Progress.FAILED,
}
# Fields only Runway's task object carries: they name its shape when the status word is unknown.
_RUNWAY_MARKERS = frozenset({"createdAt", "failureCode", "output"})


def dialect_of(obj: Mapping[str, Any]) -> Dialect:
    """The shape of one task object: its status word first, then fields only one shape has."""
    status = text_or_none(obj.get("status"))
    word = status_word(status)
    if word in ENVELOPE_STATUSES:
        return Dialect.TASK_ENVELOPE
    if word in RUNWAY_STATUSES:
        return Dialect.RUNWAY_TASK
    if status is None or not status.isdigit():
        if ENVELOPE_MARKERS & obj.keys():
            return Dialect.TASK_ENVELOPE
        if _RUNWAY_MARKERS & obj.keys():
            return Dialect.RUNWAY_TASK
    return Dialect.FEED_2024


def read_2024(data: Mapping[str, Any]) -> Reading:
    raw_status = data.get("status")
    # A number where the docs promise a string is tolerated; a bool is not a status.
    status = str(raw_status) if isinstance(raw_status, str | int) and not isinstance(raw_status, bool) else ""
    state = data.get("state") if isinstance(data.get("state"), str) else ""
    by_state = _STATE_WORDS.get(str(state).strip().lower())
    by_status = _STATUS_CODES.get(status.strip())
    note = ""
    if by_state is None and by_status is None:
        note = f"unknown status {raw_status!r} and state {state!r}: treated as still running"
    elif by_state is not None and by_status is not None and by_state is not by_status:
        note = f"state {state!r} and status {status!r} disagree: state wins"
    video = text_or_none(data.get("video_url"))
    return Reading(
        dialect=Dialect.FEED_2024,
        progress=by_state or by_status or Progress.UNKNOWN,
        status=status or None,
        video_urls=(video,) if video else (),
        poster_url=text_or_none(data.get("poster")),
        last_frame_url=text_or_none(data.get("last_frame")),
        message=text_or_none(data.get("msg")),
        note=note,
    )


def read_runway_task(task: Mapping[str, Any]) -> Reading:
    status = text_or_none(task.get("status"))
    progress, note = progress_of(status, RUNWAY_STATUSES, "Runway")
    failure = text_or_none(task.get("failure"))
    if status_word(status) == "CANCELLED":
        failure = f"cancelled: {failure}" if failure else "cancelled"
    return Reading(
        dialect=Dialect.RUNWAY_TASK,
        progress=progress,
        status=status,
        video_urls=texts(task.get("output")),
        poster_url=text_or_none(task.get("poster")),
        last_frame_url=text_or_none(task.get("last_frame")),
        message=failure,
        failure_code=text_or_none(task.get("failureCode")),
        progress_text="100%" if progress is Progress.SUCCEEDED else percentage(task.get("progress")),
        note=note,
    )


class Runway(Family):
    name = "runway"
    title = "Runway (CometAPI's feed, or Runway's own API)"
    dialect = NativeDialect("runway-task")  # the dialects proper are feed.Dialect's three
    status_words: ClassVar[Mapping[str, Progress]] = RUNWAY_STATUSES
    version_header = "X-Runway-Version"

    def serves(self, api: Provider) -> bool:
        return True  # the gateway's feed, or Runway's own API

    def query(self, task_id: str, api: Provider) -> Query:
        if api is Provider.RUNWAY:
            return Query("GET", f"/v1/tasks/{quote(task_id, safe='')}")
        return Query("POST", "/runway/feed", {"task_id": task_id})

    def not_found(self, http_status: int, api: Provider) -> bool:
        return http_status == 404 and api is Provider.RUNWAY  # Runway: no such task (yet, or any more)

    def is_native(self, obj: Mapping[str, Any]) -> bool:
        return dialect_of(obj) is not Dialect.TASK_ENVELOPE

    def is_envelope(self, obj: Mapping[str, Any]) -> bool:
        return dialect_of(obj) is Dialect.TASK_ENVELOPE

    def read_native(self, obj: Mapping[str, Any], base_url: str) -> Reading:
        dialect = dialect_of(obj)
        if dialect is Dialect.TASK_ENVELOPE:
            return read_envelope(obj)
        if dialect is Dialect.RUNWAY_TASK:
            return read_runway_task(obj)
        return read_2024(obj)

    def task_object(self, task_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        raise_for_error_envelope(body, 200)
        if "code" in body or "data" in body:
            data = body.get("data")
            if not isinstance(data, dict):
                raise FeedError(FeedErrorKind.MALFORMED, "feed answer has no `data` object", http_status=200)
        elif "status" in body:
            data = dict(body)  # a bare task object: Runway's API, or a callback's body
        else:
            raise FeedError(FeedErrorKind.MALFORMED, "feed answer is neither an envelope nor a task", http_status=200)
        answered_for = data.get("task_id", data.get("id") if "data" not in body else None)
        if answered_for not in (None, "", task_id):
            raise FeedError(
                FeedErrorKind.MALFORMED, f"feed answered for another task {str(answered_for)[:80]!r}", http_status=200
            )
        return data


FAMILY = Runway()
