"""The HTTP side of asking about a task: one request per poll, whatever the family; errors sorted by kind.

The family says what to send (`Family.query`) and how to read the answer (`Family.read_answer`);
this module sends it to the family's API (`Route`) with that API's Bearer key, retries what is
worth retrying, refuses redirects, bounds the answer's size and turns every way of not answering
into a `FeedError` of a `FeedErrorKind`.
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

    def present(self) -> bool:
        """Whether there is a key at all (False: none was put yet); raises `FeedError` when it cannot be read."""
        ...


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


@dataclass(frozen=True)
class Route:
    """Where a family's tasks are asked: which API (`api`: the dialect it answers in), its base URL,
    and the key that API takes (None: this stack holds no key for it)."""

    api: Provider
    base_url: str
    key: ApiKeySource | None


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

    `base_url` and `api_key` are the API the stack's `provider` names (CometAPI's gateway, or
    Runway's own API for Runway's tasks); every other family is asked through the gateway
    (`gateway_base_url`) with the gateway's key: `api_key` itself when the provider is the gateway,
    else `gateway_key` (None: the stack serves Runway's tasks only). Each key goes to its own API's
    host only: the feed call, a further lookup and an authenticated media download alike.
    """

    def __init__(
        self,
        base_url: str,
        api_key: ApiKeySource,
        *,
        provider: Provider = Provider.COMETAPI,
        gateway_base_url: str | None = None,
        gateway_key: ApiKeySource | None = None,
        api_version: str = "2024-11-06",
        http: urllib3.PoolManager | None = None,
        timeout: urllib3.Timeout | None = None,
        retry: urllib3.Retry | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        gateway = (gateway_base_url or base_url).rstrip("/")
        self._provider = provider
        self._own = Route(provider, base, api_key)
        self._through_gateway = (
            self._own if provider is Provider.COMETAPI else Route(Provider.COMETAPI, gateway, gateway_key)
        )
        self._api_version = api_version
        self._http = http or urllib3.PoolManager(maxsize=32, block=True)
        self._timeout = timeout or urllib3.Timeout(connect=3.05, read=20.0)
        self._retry = retry or default_retry()

    @property
    def provider(self) -> Provider:
        return self._provider

    def route(self, family: Family) -> Route:
        """Runway's tasks go to the stack's provider's API; every other family's to the gateway."""
        return self._own if family.name == "runway" else self._through_gateway

    def base_url_for(self, family: Family) -> str:
        return self.route(family).base_url

    def unserved(self, family: Family) -> str | None:
        """Why this stack cannot ask about the family's tasks (no call made), or None when it can.

        Raises `FeedError` when the key's secret cannot be read at all (a configuration error, not
        a refusal of the task)."""
        route = self.route(family)
        if not family.serves(route.api):
            return f"provider {family.name!r} is not served by this stack: its Provider is {self._provider.value}"
        if route.key is None:
            return (
                f"provider {family.name!r} is asked through the CometAPI gateway, and this stack "
                f"(Provider {self._provider.value}) has no gateway key (GATEWAY_API_KEY_SECRET_ARN is not set)"
            )
        if route is self._through_gateway and route is not self._own and not route.key.present():
            return (
                f"provider {family.name!r} is asked through the CometAPI gateway, and this stack's gateway key "
                "secret (GatewayApiKeySecretArn) holds no key: put it with make api-key GATEWAY=1"
            )
        return None

    def media_auth(self, family: Family) -> MediaAuth | None:
        """What the copier may send with a family's media: its API's key, for that API's host, or nothing."""
        route = self.route(family)
        if not family.media_through_api or route.key is None:
            return None
        return MediaAuth(route.base_url, route.key)

    def fetch(self, task_id: str, family: Family | None = None) -> FeedAnswer:
        chosen = family or family_named(None)
        assert chosen is not None  # the Runway module is part of the package
        route = self.route(chosen)
        if route.key is None:
            raise FeedError(FeedErrorKind.UNAUTHORIZED, f"this stack holds no key for {chosen.name}'s API")
        api_key = route.key
        key = api_key.current()
        try:
            body = self._request(task_id, key, chosen, route)
        except FeedError as exc:
            # A 401 may mean the key was rotated since this container read it: read it again, once.
            if exc.kind is not FeedErrorKind.UNAUTHORIZED or api_key.refreshed(key) == key:
                raise
            body = self._request(task_id, api_key.current(), chosen, route)
        answer = chosen.read_answer(task_id, body, route.api, route.base_url)
        if answer.progress is Progress.SUCCEEDED:
            answer = chosen.resolve_media(answer, lambda url: self._ask(url, chosen, route, api_key))
        return answer

    def _ask(self, url: str, family: Family, route: Route, api_key: ApiKeySource) -> Mapping[str, Any]:
        """A further JSON read from the family's API (MiniMax's files/retrieve), with the key: that host only."""
        if not same_origin(url, route.base_url):
            raise FeedError(FeedErrorKind.MALFORMED, "a media lookup pointed away from the API's host: not asked")
        return self._send("GET", url, None, self._headers(api_key.current(), family), family, api=route.api)

    def _headers(self, api_key: str, family: Family) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        if family.version_header:
            headers[family.version_header] = self._api_version
        return headers

    def _request(self, task_id: str, api_key: str, family: Family, route: Route) -> Mapping[str, Any]:
        query = family.query(task_id, route.api)
        headers = {**self._headers(api_key, family), **query.headers}
        body = None
        if query.body is not None:
            body = json.dumps(dict(query.body)).encode()
            headers["Content-Type"] = "application/json"
        return self._send(query.method, route.base_url + query.path, body, headers, family, api=route.api)

    def _send(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], family: Family, *, api: Provider
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
        return _parse_answer(response.status, raw, api, family)


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
