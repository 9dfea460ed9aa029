"""A Lambda function URL on 127.0.0.1, for local runs: real HTTP in, the handler's answer out.

Each request becomes the event a function URL sends (payload format 2.0) and is handed to the
handler one at a time, as one warm Lambda instance would take them.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ..background_server import serve_in_background

if TYPE_CHECKING:
    from collections.abc import Callable


class LocalFunctionUrl:
    def __init__(
        self,
        handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        context_factory: Callable[[], Any],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.handler = handler
        self.context_factory = context_factory
        self.invocations = 0
        self._one_at_a_time = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _request_handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def __enter__(self) -> LocalFunctionUrl:
        self._thread = serve_in_background(self._server, "function-url")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self._one_at_a_time:
            self.invocations += 1
            return self.handler(event, self.context_factory())


def function_url_event(
    method: str, target: str, headers: dict[str, str], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The event Lambda builds for a function URL request (payload format 2.0)."""
    parts = urlsplit(target)
    query = {name: ",".join(values) for name, values in parse_qs(parts.query, keep_blank_values=True).items()}
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "queryStringParameters": query or None,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def _request_handler_for(url: LocalFunctionUrl) -> type[BaseHTTPRequestHandler]:
    class FunctionUrlRequest(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # see emulator._FeedHandler

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            self._invoke("POST")

        def do_GET(self) -> None:
            self._invoke("GET")

        def _invoke(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            event = function_url_event(method, self.path, dict(self.headers.items()), body, self.client_address[0])
            response = url.invoke(event)
            payload = response.get("body") or ""
            raw = base64.b64decode(payload) if response.get("isBase64Encoded") else str(payload).encode()
            self.send_response(int(response.get("statusCode", 200)))
            for name, value in (response.get("headers") or {"content-type": "application/json"}).items():
                self.send_header(name, str(value))
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    return FunctionUrlRequest


def post_json(
    url: str, payload: Any, *, headers: dict[str, str] | None = None, timeout: float = 10.0
) -> tuple[int, str]:
    """POST a JSON body as a provider's callback would; returns the status and the body."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - local URLs built by the caller
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as refused:
        return int(refused.code), refused.read().decode()
