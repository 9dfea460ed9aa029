"""The provider's task API: one request per task, and what its answer means, in every dialect.

FEED_API.md is the contract. The same task reaches us in three shapes, recognised by shape and
never configured:

- the 2024 page (`feed-2024`): `{code: 200, data: {status: "0".."3", state?, video_url, poster, ...}}`;
  prefer a known `state`; "3" is success only with a `video_url`;
- today's task envelope (`task-envelope`): `{code: "success", data: {status: QUEUED|IN_PROGRESS|
  SUCCESS|FAILURE|..., progress: "40%", result_url, fail_reason, data: <the upstream's own task>}}`;
- Runway's own task object (`runway-task`): `{id, status: PENDING|THROTTLED|RUNNING|SUCCEEDED|
  FAILED|CANCELLED, progress: 0..1, output: [urls], failure, failureCode}`, bare from Runway's API
  or nested in the envelope.

Every answer becomes one `FeedAnswer`; unknown words mean "still running", and success needs a
media URL wherever it comes from.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from .errors import Persistence

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

MAX_ANSWER_BYTES = 1024 * 1024
MAX_OUTPUTS = 10  # media URLs archived per task; a longer list is cut (and noted), not trusted whole
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 524})
TASK_NOT_EXIST = "task_not_exist"
_REQUEST_ID = re.compile(r"request id:\s*([\w-]+)", re.IGNORECASE)


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
    """The shape an answer came in (recorded on the item and in the event)."""

    FEED_2024 = "feed-2024"
    TASK_ENVELOPE = "task-envelope"
    RUNWAY_TASK = "runway-task"


class Provider(enum.Enum):
    """Whose API the poller asks: CometAPI's feed (POST) or Runway's own tasks API (GET)."""

    COMETAPI = "cometapi"
    RUNWAY = "runway"


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
# The gateway's task status constants. UNKNOWN is listed so that it is read as a word, not a shape.
_ENVELOPE_STATUSES = {
    "NOT_START": Progress.QUEUED,
    "SUBMITTED": Progress.QUEUED,
    "QUEUED": Progress.QUEUED,
    "IN_PROGRESS": Progress.RUNNING,
    "SUCCESS": Progress.SUCCEEDED,
    "FAILURE": Progress.FAILED,
    "UNKNOWN": Progress.UNKNOWN,
}
_RUNWAY_STATUSES = {
    "PENDING": Progress.QUEUED,
    "THROTTLED": Progress.QUEUED,
    "RUNNING": Progress.RUNNING,
    "SUCCEEDED": Progress.SUCCEEDED,
    "FAILED": Progress.FAILED,
    "CANCELLED": Progress.FAILED,
}
# Fields only one shape carries: they name the dialect when the status word is unknown.
_ENVELOPE_MARKERS = frozenset({"fail_reason", "result_url", "submit_time", "finish_time", "action"})
_RUNWAY_MARKERS = frozenset({"createdAt", "failureCode", "output"})


@dataclass(frozen=True)
class FeedAnswer:
    """A provider's answer for one task, read into the archiver's own model."""

    task_id: str
    progress: Progress
    data: Mapping[str, Any]  # the task object as received (the envelope's `data`, or Runway's task)
    note: str = ""  # why the answer was read as it was, when that is not obvious
    dialect: Dialect = Dialect.FEED_2024
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

    @property
    def video_url(self) -> str | None:
        return self.video_urls[0] if self.video_urls else None

    @property
    def failure(self) -> str:
        """The reason recorded for a failed task: the provider's words and code."""
        message = self.provider_message or "provider reported failure"
        return f"{message} ({self.failure_code})" if self.failure_code else message


@dataclass(frozen=True)
class _Reading:
    """One object (outer or nested) read on its own, before the two are reconciled."""

    dialect: Dialect
    progress: Progress
    status: str | None
    video_urls: tuple[str, ...] = ()
    poster_url: str | None = None
    last_frame_url: str | None = None
    message: str | None = None
    failure_code: str | None = None
    progress_text: str | None = None
    note: str = ""


def dialect_of(obj: Mapping[str, Any]) -> Dialect:
    """The shape of one task object: its status word first, then fields only one shape has."""
    status = _text_or_none(obj.get("status"))
    word = status.upper() if status else ""
    if word in _ENVELOPE_STATUSES:
        return Dialect.TASK_ENVELOPE
    if word in _RUNWAY_STATUSES:
        return Dialect.RUNWAY_TASK
    if status is None or not status.isdigit():
        if _ENVELOPE_MARKERS & obj.keys():
            return Dialect.TASK_ENVELOPE
        if _RUNWAY_MARKERS & obj.keys():
            return Dialect.RUNWAY_TASK
    return Dialect.FEED_2024


def classify(task_id: str, data: Mapping[str, Any], provider: Provider = Provider.COMETAPI) -> FeedAnswer:
    """Read one task object (a feed `data`, an envelope's `data`, or a Runway task) into a `FeedAnswer`."""
    outer = _read(data)
    nested = data.get("data") if outer.dialect is Dialect.TASK_ENVELOPE else None
    inner = _read(nested) if isinstance(nested, dict) and nested else None
    progress, note = _reconcile(outer, inner)
    readings = (outer, inner) if inner else (outer,)
    video_urls, cut = _video_urls(outer, inner)
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
        poster_url=_first(r.poster_url for r in readings),
        last_frame_url=_first(r.last_frame_url for r in readings),
        provider_message=_first(r.message for r in readings),
        failure_code=_first(r.failure_code for r in readings),
        provider_progress=_first(r.progress_text for r in readings),
        provider_status=outer.status,
        upstream_status=inner.status if inner else None,
        provider=provider,
        facts=_facts(data, nested if isinstance(nested, dict) else None),
    )


def _read(obj: Mapping[str, Any]) -> _Reading:
    dialect = dialect_of(obj)
    if dialect is Dialect.TASK_ENVELOPE:
        return _read_envelope(obj)
    if dialect is Dialect.RUNWAY_TASK:
        return _read_runway(obj)
    return _read_2024(obj)


def _read_2024(data: Mapping[str, Any]) -> _Reading:
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
    video = _text_or_none(data.get("video_url"))
    return _Reading(
        dialect=Dialect.FEED_2024,
        progress=by_state or by_status or Progress.UNKNOWN,
        status=status or None,
        video_urls=(video,) if video else (),
        poster_url=_text_or_none(data.get("poster")),
        last_frame_url=_text_or_none(data.get("last_frame")),
        message=_text_or_none(data.get("msg")),
        note=note,
    )


def _read_envelope(data: Mapping[str, Any]) -> _Reading:
    status = _text_or_none(data.get("status"))
    progress = _ENVELOPE_STATUSES.get(status.upper() if status else "", Progress.UNKNOWN)
    note = "" if progress is not Progress.UNKNOWN else f"envelope status {status!r}: treated as still running"
    result_url = _text_or_none(data.get("result_url"))
    return _Reading(
        dialect=Dialect.TASK_ENVELOPE,
        progress=progress,
        status=status,
        video_urls=(result_url,) if result_url else (),
        poster_url=_text_or_none(data.get("poster")),
        last_frame_url=_text_or_none(data.get("last_frame")),
        message=_text_or_none(data.get("fail_reason")),
        progress_text=_percentage(data.get("progress")),
        note=note,
    )


def _read_runway(task: Mapping[str, Any]) -> _Reading:
    status = _text_or_none(task.get("status"))
    word = status.upper() if status else ""
    progress = _RUNWAY_STATUSES.get(word, Progress.UNKNOWN)
    note = "" if progress is not Progress.UNKNOWN else f"Runway status {status!r}: treated as still running"
    failure = _text_or_none(task.get("failure"))
    if word == "CANCELLED":
        failure = f"cancelled: {failure}" if failure else "cancelled"
    outputs = task.get("output")
    video_urls = tuple(u for u in (_text_or_none(o) for o in outputs) if u) if isinstance(outputs, list) else ()
    return _Reading(
        dialect=Dialect.RUNWAY_TASK,
        progress=progress,
        status=status,
        video_urls=video_urls,
        poster_url=_text_or_none(task.get("poster")),
        last_frame_url=_text_or_none(task.get("last_frame")),
        message=failure,
        failure_code=_text_or_none(task.get("failureCode")),
        progress_text="100%" if progress is Progress.SUCCEEDED else _percentage(task.get("progress")),
        note=note,
    )


def _reconcile(outer: _Reading, inner: _Reading | None) -> tuple[Progress, str]:
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


def _video_urls(outer: _Reading, inner: _Reading | None) -> tuple[tuple[str, ...], int]:
    """The video from `result_url`, else `output[0]`, else a `video_url`; then every other output."""
    first = _first((*outer.video_urls[:1], *(inner.video_urls[:1] if inner else ())))
    if first is None:
        return (), 0
    urls = [first]
    for url in (*outer.video_urls[1:], *(inner.video_urls[1:] if inner else ())):
        if url not in urls:
            urls.append(url)
    return tuple(urls[:MAX_OUTPUTS]), max(0, len(urls) - MAX_OUTPUTS)


def _facts(data: Mapping[str, Any], nested: Mapping[str, Any] | None) -> dict[str, Any]:
    """The provider's descriptive fields the item keeps flat (prompt, charge, times), where given."""
    facts: dict[str, Any] = {}
    for source in (nested or {}, data):  # the outer object has the last word
        for name in ("prompt", "prompt_en", "point", "refund", "create_time", "update_time"):
            if source.get(name) is not None:
                facts[name] = source[name]
    return facts


def _percentage(value: object) -> str | None:
    """ "40%" as given, or a 0..1 fraction (Runway) as a percentage."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:16]
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1:
        return f"{round(value * 100)}%"
    return None


def _first(values: Iterable[str | None]) -> str | None:
    return next((v for v in values if v), None)


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


def default_retry(attempts: int = 4) -> urllib3.Retry:
    """Exponential backoff with jitter on 429/5xx/timeouts, Retry-After honoured but capped."""
    return urllib3.Retry(
        total=attempts,
        connect=attempts,
        read=attempts,
        status=attempts,
        other=0,
        redirect=0,
        raise_on_redirect=False,  # a 3xx comes back as an answer, and is refused below
        raise_on_status=False,
        allowed_methods=None,  # POST /runway/feed is a read: safe to repeat
        status_forcelist=RETRYABLE_STATUSES,
        backoff_factor=0.5,
        backoff_max=8.0,
        backoff_jitter=0.5,
        respect_retry_after_header=True,
        retry_after_max=20,
    )


class ApiKeySource(Protocol):
    def current(self) -> str: ...

    def refreshed(self, stale: str) -> str: ...


class FeedClient:
    """Asks the provider about one task; answers are read into `FeedAnswer`s whatever their dialect.

    CometAPI: `POST {base}/runway/feed` with `{"task_id": ...}`. Runway: `GET {base}/v1/tasks/{id}`.
    Both with a Bearer key and `X-Runway-Version`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: ApiKeySource,
        *,
        provider: Provider = Provider.COMETAPI,
        api_version: str = "2024-11-06",
        http: urllib3.PoolManager | None = None,
        timeout: urllib3.Timeout | None = None,
        retry: urllib3.Retry | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._provider = provider
        self._api_key = api_key
        self._api_version = api_version
        self._http = http or urllib3.PoolManager(maxsize=32, block=True)
        self._timeout = timeout or urllib3.Timeout(connect=3.05, read=20.0)
        self._retry = retry or default_retry()

    @property
    def provider(self) -> Provider:
        return self._provider

    def fetch(self, task_id: str) -> FeedAnswer:
        key = self._api_key.current()
        try:
            body = self._request(task_id, key)
        except FeedError as exc:
            # A 401 may mean the key was rotated since this container read it: read it again, once.
            if exc.kind is not FeedErrorKind.UNAUTHORIZED or self._api_key.refreshed(key) == key:
                raise
            body = self._request(task_id, self._api_key.current())
        return read_answer(task_id, body, self._provider)

    def _request(self, task_id: str, api_key: str) -> Mapping[str, Any]:
        headers = {
            "Authorization": f"Bearer {api_key}",
            "X-Runway-Version": self._api_version,
            "Accept": "application/json",
        }
        if self._provider is Provider.RUNWAY:
            method, url, body = "GET", f"{self._base}/v1/tasks/{quote(task_id, safe='')}", None
        else:
            method, url, body = "POST", f"{self._base}/runway/feed", json.dumps({"task_id": task_id}).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(
                method,
                url,
                body=body,
                headers=headers,
                timeout=self._timeout,
                retries=self._retry,
                redirect=False,
                preload_content=False,
            )
        except Urllib3Error as exc:
            # MaxRetryError and friends: the message names the URL, never the headers.
            raise FeedError(FeedErrorKind.UNAVAILABLE, f"feed unreachable: {type(exc).__name__}") from exc
        try:
            raw = response.read(MAX_ANSWER_BYTES + 1)
        except Urllib3Error as exc:
            raise FeedError(FeedErrorKind.UNAVAILABLE, f"feed answer cut off: {type(exc).__name__}") from exc
        finally:
            response.release_conn()
        if len(raw) > MAX_ANSWER_BYTES:
            raise FeedError(
                FeedErrorKind.MALFORMED,
                f"feed answer larger than {MAX_ANSWER_BYTES} bytes",
                http_status=response.status,
            )
        return _parse_answer(response.status, raw, self._provider)


def _parse_answer(http_status: int, raw: bytes, provider: Provider) -> Mapping[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    request_id = _request_id(text)
    if http_status != 200:
        kind = _kind_for_status(http_status, provider)
        if kind in (FeedErrorKind.REJECTED, FeedErrorKind.TASK_NOT_FOUND):
            # A 4xx may carry the task envelope's error: its `code` says more than the status does.
            _raise_for_error_envelope(_json_object(text), http_status)
        raise FeedError(
            kind,
            f"feed answered HTTP {http_status}: {_error_message(text)}",
            http_status=http_status,
            request_id=request_id,
        )
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise FeedError(
            FeedErrorKind.MALFORMED, "feed answered HTTP 200 with a body that is not JSON", http_status=200
        ) from exc
    if not isinstance(body, dict):
        raise FeedError(FeedErrorKind.MALFORMED, "feed answer is not a JSON object", http_status=200)
    return body


def read_answer(task_id: str, body: Mapping[str, Any], provider: Provider = Provider.COMETAPI) -> FeedAnswer:
    """A whole answer body (an envelope of either age, or a bare task) read into a `FeedAnswer`."""
    return classify(task_id, task_object(task_id, body), provider)


def task_object(task_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The task object inside an answer: the envelope's `data`, or the answer itself (a bare task).

    An error envelope (a `code` other than 200 or "success") raises, with the provider's message.
    """
    _raise_for_error_envelope(body, 200)
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


def _raise_for_error_envelope(body: Mapping[str, Any] | None, http_status: int) -> None:
    """Raise for `{code, msg}` (2024: code not 200) or `{code, message}` (today: code not "success")."""
    if body is None or body.get("code") is None:
        return
    code = str(body["code"]).strip()
    if code in ("200", "success"):
        return
    message = str(body.get("message") or body.get("msg") or "")[:200]
    kind = FeedErrorKind.TASK_NOT_FOUND if code == TASK_NOT_EXIST else FeedErrorKind.APPLICATION
    raise FeedError(
        kind, f"feed answered code {code[:60]}: {message}", http_status=http_status, request_id=_request_id(message)
    )


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _kind_for_status(http_status: int, provider: Provider) -> FeedErrorKind:
    if http_status == 401:
        return FeedErrorKind.UNAUTHORIZED
    if http_status == 403:
        return FeedErrorKind.FORBIDDEN
    if 300 <= http_status < 400:
        return FeedErrorKind.REDIRECTED
    if http_status in RETRYABLE_STATUSES or http_status >= 500:
        return FeedErrorKind.UNAVAILABLE
    if http_status == 404 and provider is Provider.RUNWAY:
        return FeedErrorKind.TASK_NOT_FOUND  # Runway: no such task (yet, or any more)
    return FeedErrorKind.REJECTED


def _error_message(text: str) -> str:
    """The `error.message` (CometAPI) or `error` (Runway) of an error body, or the start of it."""
    body = _json_object(text)
    error = body.get("error") if body else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    return " ".join(text.split())[:120] or "(empty body)"


def _request_id(text: str) -> str | None:
    match = _REQUEST_ID.search(text)
    return match.group(1) if match else None


def _text_or_none(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
