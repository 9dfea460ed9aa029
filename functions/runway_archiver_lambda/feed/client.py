"""The HTTP side of asking about a task: one request per poll, whatever the family; errors sorted by kind.

The family says what to send (`Family.query`) and how to read the answer (`Family.read_answer`);
this module sends it with the Bearer key, retries what is worth retrying, refuses redirects, bounds
the answer's size and turns every way of not answering into a `FeedError` of a `FeedErrorKind`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from .family import Family, family_named
from .model import (
    FeedAnswer,
    FeedError,
    FeedErrorKind,
    Progress,
    Provider,
    raise_for_error_envelope,
    request_id_in,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_ANSWER_BYTES = 1024 * 1024
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 524})


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


@dataclass(frozen=True)
class MediaAuth:
    """The key for media served by the API itself, and the one origin it may be sent to.

    The copier sends `Authorization` only to a hop whose scheme, host and port are the API base's;
    a redirect anywhere else goes without it. The key is read at send time, never stored elsewhere.
    """

    base_url: str
    api_key: ApiKeySource

    def headers_for(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key.current()}"} if same_origin(url, self.base_url) else {}


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme.lower(), a.hostname, a.port or _default_port(a.scheme)) == (
        b.scheme.lower(),
        b.hostname,
        b.port or _default_port(b.scheme),
    )


def _default_port(scheme: str) -> int:
    return 443 if scheme.lower() == "https" else 80


class FeedClient:
    """Asks the provider about one task of a family; answers are read into `FeedAnswer`s by that family.

    `base_url` is the API the stack's `provider` names (CometAPI's gateway, or Runway's own API for
    Runway's tasks); `gateway_base_url` is the gateway's, which serves every other family.
    """

    def __init__(
        self,
        base_url: str,
        api_key: ApiKeySource,
        *,
        provider: Provider = Provider.COMETAPI,
        gateway_base_url: str | None = None,
        api_version: str = "2024-11-06",
        http: urllib3.PoolManager | None = None,
        timeout: urllib3.Timeout | None = None,
        retry: urllib3.Retry | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._gateway = (gateway_base_url or base_url).rstrip("/")
        self._provider = provider
        self._api_key = api_key
        self._api_version = api_version
        self._http = http or urllib3.PoolManager(maxsize=32, block=True)
        self._timeout = timeout or urllib3.Timeout(connect=3.05, read=20.0)
        self._retry = retry or default_retry()

    @property
    def provider(self) -> Provider:
        return self._provider

    def base_url_for(self, family: Family) -> str:
        """Runway's tasks go to the stack's provider's API; every other family's to the gateway."""
        return self._base if family.name == "runway" else self._gateway

    def media_auth(self, family: Family) -> MediaAuth | None:
        """What the copier may send with a family's media: the key for the API's own host, or nothing."""
        return MediaAuth(self.base_url_for(family), self._api_key) if family.media_through_api else None

    def fetch(self, task_id: str, family: Family | None = None) -> FeedAnswer:
        chosen = family or family_named(None)
        assert chosen is not None  # the Runway module is part of the package
        key = self._api_key.current()
        try:
            body = self._request(task_id, key, chosen)
        except FeedError as exc:
            # A 401 may mean the key was rotated since this container read it: read it again, once.
            if exc.kind is not FeedErrorKind.UNAUTHORIZED or self._api_key.refreshed(key) == key:
                raise
            body = self._request(task_id, self._api_key.current(), chosen)
        answer = chosen.read_answer(task_id, body, self._provider, self.base_url_for(chosen))
        if answer.progress is Progress.SUCCEEDED:
            answer = chosen.resolve_media(answer, lambda url: self._ask(url, chosen))
        return answer

    def _ask(self, url: str, family: Family) -> Mapping[str, Any]:
        """A further JSON read from the family's API (MiniMax's files/retrieve), with the key: that host only."""
        if not same_origin(url, self.base_url_for(family)):
            raise FeedError(FeedErrorKind.MALFORMED, "a media lookup pointed away from the API's host: not asked")
        return self._send("GET", url, None, self._headers(self._api_key.current(), family), family)

    def _headers(self, api_key: str, family: Family) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        if family.version_header:
            headers[family.version_header] = self._api_version
        return headers

    def _request(self, task_id: str, api_key: str, family: Family) -> Mapping[str, Any]:
        query = family.query(task_id, self._provider)
        headers = {**self._headers(api_key, family), **query.headers}
        body = None
        if query.body is not None:
            body = json.dumps(dict(query.body)).encode()
            headers["Content-Type"] = "application/json"
        return self._send(query.method, self.base_url_for(family) + query.path, body, headers, family)

    def _send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], family: Family
    ) -> Mapping[str, Any]:
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
        return _parse_answer(response.status, raw, self._provider, family)


def _parse_answer(http_status: int, raw: bytes, provider: Provider, family: Family) -> Mapping[str, Any]:
    text = raw.decode("utf-8", errors="replace")
    request_id = request_id_in(text)
    if http_status != 200:
        kind = _kind_for_status(http_status, provider, family)
        if kind in (FeedErrorKind.REJECTED, FeedErrorKind.TASK_NOT_FOUND):
            # A 4xx may carry the task envelope's error: its `code` says more than the status does.
            raise_for_error_envelope(_json_object(text), http_status, family.success_codes)
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


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _kind_for_status(http_status: int, provider: Provider, family: Family) -> FeedErrorKind:
    if http_status == 401:
        return FeedErrorKind.UNAUTHORIZED
    if http_status == 403:
        return FeedErrorKind.FORBIDDEN
    if 300 <= http_status < 400:
        return FeedErrorKind.REDIRECTED
    if http_status in RETRYABLE_STATUSES or http_status >= 500:
        return FeedErrorKind.UNAVAILABLE
    if family.not_found(http_status, provider):
        return FeedErrorKind.TASK_NOT_FOUND
    return FeedErrorKind.REJECTED


def _error_message(text: str) -> str:
    """The `error.message` (CometAPI, OpenAI) or `error` (Runway) of an error body, or the start of it."""
    body = _json_object(text)
    error = body.get("error") if body else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    return " ".join(text.split())[:120] or "(empty body)"
