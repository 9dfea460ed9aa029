"""The browse page served on 127.0.0.1 only: its routes, its static files, the security headers every
answer carries, and `serve`, which keeps it up until Ctrl-C (and opens it in a browser where there
is one). A request naming another host than the loopback address is refused.
"""

from __future__ import annotations

import html
import json
import os
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from ..background_server import serve_in_background
from ..stack.archive import OperatorError, StackResources, explain
from .model import LINK_SECONDS, BrowseError, Browser, Filters
from .render import render_error, render_grid, render_task

if TYPE_CHECKING:
    from collections.abc import Callable

    import boto3


STATIC = Path(__file__).with_name("static")
STATIC_FILES = {"browse.css": "text/css; charset=utf-8", "browse.js": "text/javascript; charset=utf-8"}
LOOPBACK = "127.0.0.1"


def _origins(markup: str) -> str:
    """The origins of the presigned links on a page: the only ones its images and videos may load from."""
    found: set[str] = set()
    for attribute in ('src="', 'poster="'):
        for chunk in markup.split(attribute)[1:]:
            parts = urlsplit(html.unescape(chunk.split('"', 1)[0]))
            if parts.scheme in ("http", "https") and parts.netloc:
                found.add(f"{parts.scheme}://{parts.netloc}")
    return " ".join(sorted(found))


def security_headers(markup: str) -> dict[str, str]:
    origins = _origins(markup)
    media = origins or "'none'"
    policy = (
        "default-src 'none'; style-src 'self'; script-src 'self'; "
        f"img-src 'self' {origins}; media-src {media}; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
    }


class BrowseServer:
    """The page on 127.0.0.1:port (0: a free port), served from a thread or in the foreground."""

    def __init__(self, browser: Browser, port: int = 0, *, log: Callable[[str], None] | None = None) -> None:
        self.browser = browser
        self.log = log or (lambda line: print(line, file=sys.stderr))
        try:
            self._server = ThreadingHTTPServer((LOOPBACK, port), _handler_for(self))
        except OSError as exc:
            raise OperatorError(f"cannot listen on {LOOPBACK}:{port} ({exc.strerror}): pass another --port") from None
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def __enter__(self) -> BrowseServer:
        self._thread = serve_in_background(self._server, "browse")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def respond(self, path: str, host: str | None) -> tuple[int, str, bytes, dict[str, str]]:
        """Status, content type, body and headers for a GET of `path`."""
        allowed = {f"{LOOPBACK}:{self.port}", f"localhost:{self.port}"}
        if host not in allowed:
            # A page elsewhere that points a name at 127.0.0.1 (DNS rebinding) sends its own Host.
            return self._page(421, render_error(421, "this page answers only at its loopback address"))
        parts = urlsplit(path)
        route = parts.path
        if route.startswith("/static/") and route.removeprefix("/static/") in STATIC_FILES:
            name = route.removeprefix("/static/")
            headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
            return 200, STATIC_FILES[name], (STATIC / name).read_bytes(), headers
        try:
            if route == "/":
                filters = Filters.parse(parse_qs(parts.query))
                return self._page(200, render_grid(self.browser, self.browser.page(filters)))
            if route.startswith("/task/") and len(route) > len("/task/"):
                view = self.browser.task(unquote(route.removeprefix("/task/")))
                return self._page(200, render_task(self.browser, view))
            raise BrowseError(404, "no such page")
        except BrowseError as exc:
            return self._page(exc.status, render_error(exc.status, str(exc)))
        except (ClientError, BotoCoreError) as exc:
            self.log(f"runway-archiver browse: {explain(exc)}")
            return self._page(502, render_error(502, f"AWS answered: {explain(exc)}"))

    @staticmethod
    def _page(status: int, markup: str) -> tuple[int, str, bytes, dict[str, str]]:
        return status, "text/html; charset=utf-8", markup.encode(), security_headers(markup)


def _handler_for(server: BrowseServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "runway-archiver-browse"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            return  # a line per request would bury the one line that says where the page is

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, *, send_body: bool) -> None:
            status, content_type, body, headers = server.respond(self.path, self.headers.get("Host"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

    return Handler


def serve(browser: Browser, *, port: int = 0, open_browser: bool = True, as_json: bool = False) -> int:
    """Serve the page until Ctrl-C (or SIGTERM); open it in a browser when there is one."""
    import signal

    server = BrowseServer(browser, port)
    where = {"url": server.url, "stack": browser.stack_name, "link_seconds": browser.link_seconds}
    line = (
        f"browsing stack {browser.stack_name} at {server.url} (only from this machine; media links work "
        f"{browser.link_seconds} s from each page load). Ctrl-C stops."
    )
    if as_json:
        print(json.dumps(where), flush=True)
    else:
        print(line, flush=True)
    if open_browser and not _open(server.url):
        print("no browser found here: open the address above in one", file=sys.stderr, flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.close()
    return 0


def _open(url: str) -> bool:
    """Open the page in the user's browser, if this machine has a graphical one (a terminal
    browser would take over the terminal the server prints to)."""
    graphical = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if not graphical:
        return False
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def serve_stack(session: boto3.session.Session, stack_name: str, *, open_browser: bool = True) -> int:
    """The page on a stack found by name (the demo's: `runway-archiver demo --browse`)."""
    resources = StackResources.find(session, stack_name)
    return serve(Browser.for_stack(session, resources, LINK_SECONDS), open_browser=open_browser)
