"""The archiver's model of a provider's answer, and the status rules every family shares.

Every family's answer becomes one `FeedAnswer`. The rules are the same whoever answered:

- a terminal word beats a word that is not terminal, whichever layer (the gateway's envelope or
  the upstream's own task nested in it) says it; both terminal: the upstream's own word wins;
- a success without a media URL is still running (polled again, noted);
- a word nobody knows means "still running": polled again, and the answer is noted (logged);
- status words are read whatever their case or spacing (" SUCCEEDED ", "in progress").
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Persistence

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MAX_OUTPUTS = 10  # media URLs archived per task; a longer list is cut (and noted), not trusted whole
TASK_NOT_EXIST = "task_not_exist"


class Progress(enum.Enum):
    """Where the provider says a task is."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in (Progress.SUCCEEDED, Progress.FAILED)


class Dialect(enum.Enum):
    """The shapes Runway's tasks come in (recorded on the item and in the event)."""

    FEED_2024 = "feed-2024"
    TASK_ENVELOPE = "task-envelope"
    RUNWAY_TASK = "runway-task"


@dataclass(frozen=True)
class NativeDialect:
    """Another family's own task object (`kling-task`, `sora-video`...), declared by its module."""

    value: str


AnyDialect = Dialect | NativeDialect


class Provider(enum.Enum):
    """Whose API the stack asks: CometAPI's gateway (every family), or Runway's own tasks API (Runway only)."""

    COMETAPI = "cometapi"
    RUNWAY = "runway"


@dataclass(frozen=True)
class FeedAnswer:
    """A provider's answer for one task, read into the archiver's own model."""

    task_id: str
    progress: Progress
    data: Mapping[str, Any]  # the task object as received (the envelope's `data`, or the bare task)
    note: str = ""  # why the answer was read as it was, when that is not obvious
    dialect: AnyDialect = Dialect.FEED_2024
    video_urls: tuple[str, ...] = ()  # the first is the `video` asset; more when the task made several
    poster_url: str | None = None
    last_frame_url: str | None = None
    provider_message: str | None = None  # the provider's failure text
    failure_code: str | None = None  # e.g. Runway's SAFETY.INPUT.TEXT
    provider_progress: str | None = None  # as a percentage, e.g. "40%"
    provider_status: str | None = None  # the answering object's own status word or code
    upstream_status: str | None = None  # the nested upstream task's status, in an envelope
    provider: Provider = Provider.COMETAPI
    facts: Mapping[str, Any] = field(default_factory=dict)  # prompt, point, refund, times: when given
    family: str = "runway"  # the model family whose task this is (feed.families)
    media_through_api: bool = False  # the media are fetched from the API with the key (Sora's content endpoint)

    @property
    def video_url(self) -> str | None:
        return self.video_urls[0] if self.video_urls else None

    @property
    def failure(self) -> str:
        """The reason recorded for a failed task: the provider's words and code."""
        message = self.provider_message or "provider reported failure"
        return f"{message} ({self.failure_code})" if self.failure_code else message


@dataclass(frozen=True)
class Reading:
    """One object (outer or nested) read on its own, before the two are reconciled."""

    dialect: AnyDialect
    progress: Progress
    status: str | None
    video_urls: tuple[str, ...] = ()
    poster_url: str | None = None
    last_frame_url: str | None = None
    message: str | None = None
    failure_code: str | None = None
    progress_text: str | None = None
    note: str = ""


# -- status words -------------------------------------------------------------------------------
def status_word(value: object) -> str:
    """A status word as the maps spell it: upper case, spaces and dashes as one underscore.

    " SUCCEEDED ", "Succeeded", "in progress" and "IN-PROGRESS" all read as themselves.
    """
    text = text_or_none(value)
    return re.sub(r"[\s_-]+", "_", text).upper() if text else ""


def progress_of(status: str | None, words: Mapping[str, Progress], what: str) -> tuple[Progress, str]:
    """The progress a status word maps to, and the note an unknown one deserves."""
    progress = words.get(status_word(status), Progress.UNKNOWN)
    note = "" if progress is not Progress.UNKNOWN else f"{what} status {status!r}: treated as still running"
    return progress, note


# -- the gateway's task envelope (any family's task, nested in `data`) ----------------------------
# The gateway's task status constants (new-api model/task.go). UNKNOWN is listed so that it is read
# as a word, not a shape.
ENVELOPE_STATUSES = {
    "NOT_START": Progress.QUEUED,
    "SUBMITTED": Progress.QUEUED,
    "QUEUED": Progress.QUEUED,
    "IN_PROGRESS": Progress.RUNNING,
    "SUCCESS": Progress.SUCCEEDED,
    "FAILURE": Progress.FAILED,
    "UNKNOWN": Progress.UNKNOWN,
}
# Fields only the envelope carries: they name its shape when the status word is unknown.
ENVELOPE_MARKERS = frozenset({"fail_reason", "result_url", "submit_time", "finish_time", "action"})


def read_envelope(data: Mapping[str, Any]) -> Reading:
    status = text_or_none(data.get("status"))
    progress, _ = progress_of(status, ENVELOPE_STATUSES, "envelope")
    note = "" if progress is not Progress.UNKNOWN else f"envelope status {status!r}: treated as still running"
    result_url = text_or_none(data.get("result_url"))
    return Reading(
        dialect=Dialect.TASK_ENVELOPE,
        progress=progress,
        status=status,
        video_urls=(result_url,) if result_url else (),
        poster_url=text_or_none(data.get("poster")),
        last_frame_url=text_or_none(data.get("last_frame")),
        message=text_or_none(data.get("fail_reason")),
        progress_text=percentage(data.get("progress")),
        note=note,
    )


# -- one answer from its readings -----------------------------------------------------------------
def build_answer(
    task_id: str,
    data: Mapping[str, Any],
    outer: Reading,
    inner: Reading | None,
    *,
    provider: Provider,
    family: str,
    media_through_api: bool = False,
    nested: Mapping[str, Any] | None = None,
) -> FeedAnswer:
    """The shared rules applied to the outer object's reading and, in an envelope, the nested one's."""
    progress, note = reconcile(outer, inner)
    readings = (outer, inner) if inner else (outer,)
    video_urls, cut = merged_video_urls(outer, inner)
    notes = [note, *(r.note for r in readings)]
    if cut:
        notes.append(f"{cut} more output URL(s) than {MAX_OUTPUTS}: not archived")
    if progress is Progress.SUCCEEDED and not video_urls:
        progress = Progress.UNKNOWN
        notes.append("reported success without a media URL: treated as still running")
    return FeedAnswer(
        task_id=task_id,
        progress=progress,
        data=dict(data),
        note="; ".join(n for n in notes if n),
        dialect=outer.dialect,
        video_urls=video_urls,
        poster_url=first(r.poster_url for r in readings),
        last_frame_url=first(r.last_frame_url for r in readings),
        provider_message=first(r.message for r in readings),
        failure_code=first(r.failure_code for r in readings),
        provider_progress=first(r.progress_text for r in readings),
        provider_status=outer.status,
        upstream_status=inner.status if inner else None,
        provider=provider,
        facts=facts_of(data, nested),
        family=family,
        media_through_api=media_through_api,
    )


def reconcile(outer: Reading, inner: Reading | None) -> tuple[Progress, str]:
    """The envelope's word against the upstream's own, when they disagree.

    As `state` wins over `status` in the 2024 page, the more specific word wins: the upstream's own
    task (first-hand) over the gateway's summary of it. One exception keeps videos safe: a terminal
    word beats a word that is not terminal, whichever layer says it, because a finished task never
    goes back, and the other layer is a snapshot the gateway has not refreshed (a nested RUNNING
    under an envelope SUCCESS would otherwise keep a finished task polling until it expires).
    """
    if inner is None or inner.progress is Progress.UNKNOWN or inner.progress is outer.progress:
        return outer.progress, ""
    if outer.progress is Progress.UNKNOWN:
        return inner.progress, ""
    if outer.progress.is_terminal and not inner.progress.is_terminal:
        winner, why = outer.progress, "the envelope is terminal"
    elif inner.progress.is_terminal and not outer.progress.is_terminal:
        winner, why = inner.progress, "the upstream task is terminal"
    else:
        winner, why = inner.progress, "the upstream's own word wins"
    note = f"envelope status {outer.status!r} and upstream status {inner.status!r} disagree: {why}"
    return winner, note


def merged_video_urls(outer: Reading, inner: Reading | None) -> tuple[tuple[str, ...], int]:
    """The outer object's first video, else the nested one's; then every other output, once."""
    head = first((*outer.video_urls[:1], *(inner.video_urls[:1] if inner else ())))
    if head is None:
        return (), 0
    urls = [head]
    for url in (*outer.video_urls[1:], *(inner.video_urls[1:] if inner else ())):
        if url not in urls:
            urls.append(url)
    return tuple(urls[:MAX_OUTPUTS]), max(0, len(urls) - MAX_OUTPUTS)


def facts_of(data: Mapping[str, Any], nested: Mapping[str, Any] | None) -> dict[str, Any]:
    """The provider's descriptive fields the item keeps flat (prompt, charge, times), where given."""
    facts: dict[str, Any] = {}
    for source in (nested or {}, data):  # the outer object has the last word
        for name in ("prompt", "prompt_en", "point", "refund", "create_time", "update_time"):
            if source.get(name) is not None:
                facts[name] = source[name]
    return facts


# -- small readers ---------------------------------------------------------------------------------
def percentage(value: object) -> str | None:
    """ "40%" as given, or a 0..1 fraction (Runway) as a percentage."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:16]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return f"{round(value * 100)}%"
    return None


def first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


def text_or_none(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def texts(values: object) -> tuple[str, ...]:
    """The non-empty strings of a list (anything else: none)."""
    if not isinstance(values, list):
        return ()
    return tuple(u for u in (text_or_none(v) for v in values) if u)


# -- errors ----------------------------------------------------------------------------------------
class FeedErrorKind(enum.Enum):
    """Why a poll gave no usable answer. Decisions are made on this, never on message text."""

    UNAUTHORIZED = "unauthorized"  # 401: the key is wrong; a configuration error
    FORBIDDEN = "forbidden"  # 403: the key may not do this (account-wide); a configuration error
    REJECTED = "rejected"  # 400: this task's request is refused; retrying will not help
    REDIRECTED = "redirected"  # 3xx: wrong base URL; redirects are never followed
    UNAVAILABLE = "unavailable"  # 429/5xx after retries, timeouts, connection errors
    MALFORMED = "malformed"  # not JSON, no task object, an answer for another task
    APPLICATION = "application"  # an error envelope (`code` other than success) for this task
    TASK_NOT_FOUND = "task_not_found"  # `task_not_exist` / Runway's 404: a new id may answer so briefly

    @property
    def is_configuration_error(self) -> bool:
        """Every other task would fail the same way: stop the run early."""
        return self in (FeedErrorKind.UNAUTHORIZED, FeedErrorKind.FORBIDDEN, FeedErrorKind.REDIRECTED)

    @property
    def persistence(self) -> Persistence:
        """For the task: a refusal of the task itself is waited out for a grace period only.

        TASK_NOT_FOUND is persistent too; the poller reads it as transient while the task is new.
        """
        if self in (FeedErrorKind.REJECTED, FeedErrorKind.APPLICATION, FeedErrorKind.TASK_NOT_FOUND):
            return Persistence.PERSISTENT
        return Persistence.TRANSIENT


class FeedError(Exception):
    """A poll that gave no usable answer."""

    def __init__(
        self, kind: FeedErrorKind, reason: str, *, http_status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.http_status = http_status
        self.request_id = request_id


_REQUEST_ID = re.compile(r"request id:\s*([\w-]+)", re.IGNORECASE)


def request_id_in(text: str) -> str | None:
    match = _REQUEST_ID.search(text)
    return match.group(1) if match else None


def raise_for_error_envelope(
    body: Mapping[str, Any] | None, http_status: int, success_codes: frozenset[str] = frozenset({"200", "success"})
) -> None:
    """Raise for `{code, msg}` (2024: code not 200) or `{code, message}` (today: code not "success").

    A family whose own answers carry another success code (Kling's 0) passes its own.
    """
    if body is None or body.get("code") is None:
        return
    code = str(body["code"]).strip()
    if code in success_codes:
        return
    message = str(body.get("message") or body.get("msg") or "")[:200]
    kind = FeedErrorKind.TASK_NOT_FOUND if code == TASK_NOT_EXIST else FeedErrorKind.APPLICATION
    raise FeedError(
        kind, f"feed answered code {code[:60]}: {message}", http_status=http_status, request_id=request_id_in(message)
    )
