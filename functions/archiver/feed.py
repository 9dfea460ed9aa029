"""The CometAPI Runway feed endpoint: one POST per task, and what its answer means.

FEED_API.md is the contract: `status` is a string "0".."3", `state` is present on newer
deployments only, and one reseller documents 2 and 3 the other way round. So: prefer a known
`state`; "3" is success only with a `video_url`; unknown answers mean "still running".
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from .errors import Persistence

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_ANSWER_BYTES = 1024 * 1024
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 524})
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


@dataclass(frozen=True)
class FeedAnswer:
    """The `data` object of a feed answer, classified."""

    task_id: str
    progress: Progress
    data: Mapping[str, Any]
    note: str = ""  # why the answer was read as it was, when that is not obvious

    @property
    def video_url(self) -> str | None:
        return _text_or_none(self.data.get("video_url"))

    @property
    def poster_url(self) -> str | None:
        return _text_or_none(self.data.get("poster"))

    @property
    def last_frame_url(self) -> str | None:
        return _text_or_none(self.data.get("last_frame"))

    @property
    def provider_message(self) -> str | None:
        return _text_or_none(self.data.get("msg"))


def classify(task_id: str, data: Mapping[str, Any]) -> FeedAnswer:
    """Read a feed `data` object the way FEED_API.md says."""
    raw_status = data.get("status")
    # A number where the docs promise a string is tolerated; a bool is not a status.
    status = str(raw_status) if isinstance(raw_status, str | int) and not isinstance(raw_status, bool) else ""
    state = data.get("state") if isinstance(data.get("state"), str) else ""
    by_state = _STATE_WORDS.get(str(state).strip().lower())
    by_status = _STATUS_CODES.get(status.strip())
    progress = by_state or by_status or Progress.UNKNOWN
    note = ""
    if by_state is None and by_status is None:
        note = f"unknown status {raw_status!r} and state {state!r}: treated as still running"
    elif by_state is not None and by_status is not None and by_state is not by_status:
        note = f"state {state!r} and status {status!r} disagree: state wins"
    if progress is Progress.SUCCEEDED and not _text_or_none(data.get("video_url")):
        progress = Progress.UNKNOWN
        note = "reported success without a video_url: treated as still running"
    return FeedAnswer(task_id=task_id, progress=progress, data=dict(data), note=note)


class FeedErrorKind(enum.Enum):
    """Why a poll gave no usable answer. Decisions are made on this, never on message text."""

    UNAUTHORIZED = "unauthorized"  # 401: the key is wrong; a configuration error
    FORBIDDEN = "forbidden"  # 403: the key may not do this (account-wide); a configuration error
    REJECTED = "rejected"  # 400: this task's request is refused; retrying will not help
    REDIRECTED = "redirected"  # 3xx: wrong base URL; redirects are never followed
    UNAVAILABLE = "unavailable"  # 429/5xx after retries, timeouts, connection errors
    MALFORMED = "malformed"  # not JSON, no `data`, an answer for another task
    APPLICATION = "application"  # HTTP 200 with `code` other than 200 (e.g. unknown task id)

    @property
    def is_configuration_error(self) -> bool:
        """Every other task would fail the same way: stop the run early."""
        return self in (FeedErrorKind.UNAUTHORIZED, FeedErrorKind.FORBIDDEN, FeedErrorKind.REDIRECTED)

    @property
    def persistence(self) -> Persistence:
        """For the task: a refusal of the task itself is waited out for a grace period only."""
        if self in (FeedErrorKind.REJECTED, FeedErrorKind.APPLICATION):
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
    """POST {base}/runway/feed with a Bearer key; answers are classified `FeedAnswer`s."""

    def __init__(
        self,
        base_url: str,
        api_key: ApiKeySource,
        *,
        api_version: str = "2024-11-06",
        http: urllib3.PoolManager | None = None,
        timeout: urllib3.Timeout | None = None,
        retry: urllib3.Retry | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + "/runway/feed"
        self._api_key = api_key
        self._api_version = api_version
        self._http = http or urllib3.PoolManager(maxsize=32, block=True)
        self._timeout = timeout or urllib3.Timeout(connect=3.05, read=20.0)
        self._retry = retry or default_retry()

    def fetch(self, task_id: str) -> FeedAnswer:
        key = self._api_key.current()
        try:
            body = self._post(task_id, key)
        except FeedError as exc:
            # A 401 may mean the key was rotated since this container read it: read it again, once.
            if exc.kind is not FeedErrorKind.UNAUTHORIZED or self._api_key.refreshed(key) == key:
                raise
            body = self._post(task_id, self._api_key.current())
        return classify(task_id, _task_data(task_id, body))

    def _post(self, task_id: str, api_key: str) -> Mapping[str, Any]:
        headers = {
            "Authorization": f"Bearer {api_key}",
            "X-Runway-Version": self._api_version,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        try:
            response = self._http.request(
                "POST",
                self._url,
                body=json.dumps({"task_id": task_id}).encode(),
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
        return _parse_answer(response.status, raw)


def _parse_answer(http_status: int, raw: bytes) -> Mapping[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    request_id = _request_id(text)
    if http_status != 200:
        kind = _kind_for_status(http_status)
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
            FeedErrorKind.MALFORMED, "feed answered HTTP 200 with a body that is not JSON", http_status=http_status
        ) from exc
    if not isinstance(body, dict):
        raise FeedError(FeedErrorKind.MALFORMED, "feed answer is not a JSON object", http_status=http_status)
    return body


def _task_data(task_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    code = body.get("code")
    if code is not None and str(code) != "200":
        raise FeedError(
            FeedErrorKind.APPLICATION,
            f"feed answered code {code}: {str(body.get('msg') or '')[:200]}",
            http_status=200,
            request_id=_request_id(str(body.get("msg") or "")),
        )
    data = body.get("data")
    if not isinstance(data, dict):
        raise FeedError(FeedErrorKind.MALFORMED, "feed answer has no `data` object", http_status=200)
    answered_for = data.get("task_id")
    if answered_for not in (None, "", task_id):
        raise FeedError(
            FeedErrorKind.MALFORMED, f"feed answered for another task {str(answered_for)[:80]!r}", http_status=200
        )
    return data


def _kind_for_status(http_status: int) -> FeedErrorKind:
    if http_status == 401:
        return FeedErrorKind.UNAUTHORIZED
    if http_status == 403:
        return FeedErrorKind.FORBIDDEN
    if 300 <= http_status < 400:
        return FeedErrorKind.REDIRECTED
    if http_status in RETRYABLE_STATUSES or http_status >= 500:
        return FeedErrorKind.UNAVAILABLE
    return FeedErrorKind.REJECTED


def _error_message(text: str) -> str:
    """The `error.message` of the documented envelope, or the start of whatever came back."""
    try:
        envelope = json.loads(text)
        message = envelope["error"]["message"]
        if isinstance(message, str):
            return message[:300]
    except (ValueError, KeyError, TypeError):
        pass
    return " ".join(text.split())[:120] or "(empty body)"


def _request_id(text: str) -> str | None:
    match = _REQUEST_ID.search(text)
    return match.group(1) if match else None


def _text_or_none(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
