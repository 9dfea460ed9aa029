"""A local emulator of the provider's task APIs and of the CDN that serves their media.

It behaves as FEED_API.md says. `POST /runway/feed` with a Bearer key answers in the dialect chosen
per task: the 2024 page (`feed-2024`: `status` "0".."3" with `state` words), today's task envelope
with Runway's task nested in it (`task-envelope`), or the envelope around a 2024 object
(`task-envelope/feed-2024`). `GET /v1/tasks/{id}` is Runway's own API (Bearer key and
`X-Runway-Version` required), answering Runway's bare task object. A task moves one step per poll
along a script (e.g. "0 1 3", or words: "queued throttled running succeeded", "failed",
"cancelled", "unknown"); media URLs (plain http, as documented) are served from `/media/...`.
Faults can be queued per task or per media path, for tests and demos. Media bodies are made on
the fly from a seed, so a 1 GiB video costs no memory and no disk.

Every other model family (`EmulatedTask.family`: kling, sora, veo, luma, minimax, seedance) is
answered on its own query path as its samples in events/feed/<family>/ are
(`emulated_families`), its media served by a second server, the CDN, on another port: Sora's and
Veo's content endpoint (`GET /v1/videos/{id}/content`, refused without the key, HTTP 400 before
the task is done) streams the file itself or, with `content_redirect`, redirects to the CDN;
MiniMax's `files/retrieve` (key required) names the file's CDN URL.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..background_server import serve_in_background
from . import emulated_families
from .emulated_families import Route, route_of

if TYPE_CHECKING:
    from collections.abc import Iterator

STATE_WORDS = {"0": "queued", "1": "running", "2": "failed", "3": "succeeded"}
# A script step (a 2024 code or a word) as each dialect says it.
_WORDS = ("queued", "throttled", "running", "succeeded", "failed", "cancelled", "unknown")
STEP_WORDS = {**STATE_WORDS, **{word: word for word in _WORDS}}
LEGACY_CODES = {"queued": "0", "throttled": "0", "running": "1", "failed": "2", "cancelled": "2", "succeeded": "3"}
ENVELOPE_STATUSES = {
    "queued": "QUEUED",
    "throttled": "QUEUED",
    "running": "IN_PROGRESS",
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "cancelled": "FAILURE",
}
RUNWAY_STATUSES = {
    "queued": "PENDING",
    "throttled": "THROTTLED",
    "running": "RUNNING",
    "succeeded": "SUCCEEDED",
    "failed": "FAILED",
    "cancelled": "CANCELLED",
}
DIALECTS = ("feed-2024", "task-envelope", "task-envelope/feed-2024")
RUNWAY_API_VERSION = "2024-11-06"
CONTENT_TYPES = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"}
FAMILIES = ("runway", *emulated_families.FAMILIES)
_BLOCK = 1024 * 1024
_PIECE = 64 * 1024


@dataclass
class Fault:
    """One scripted misbehaviour, used once, in order, before the normal answer."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    truncate_at: int | None = None  # stop sending the body after this many bytes, then close
    drop: bool = False  # close the connection without answering
    delay: float = 0.0  # seconds before answering
    # Media only: serve the real file, but misbehave while doing it.
    stream: bool = False  # serve the file (with the changes below) rather than `body`
    chunked: bool = False  # no Content-Length: Transfer-Encoding chunked
    drip_seconds: float = 0.0  # pause between pieces of the body
    drip_piece: int = _PIECE  # the size of those pieces (1: a byte at a time)
    header_drip_seconds: float = 0.0  # pause between the bytes of the status line and headers
    stream_content_type: str | None = None  # claim another Content-Type for the file

    def cut_after(self, at: int) -> Fault:
        """This answer, cut off after `at` bytes of its body."""
        return replace(self, truncate_at=at)

    @classmethod
    def media(cls, **changes: Any) -> Fault:
        """The real media file, served with `changes` (truncate_at, chunked, drip_seconds, …)."""
        return cls(stream=True, **changes)

    @classmethod
    def http(cls, status: int, *, retry_after: int | None = None) -> Fault:
        envelope = {
            "error": {
                "code": "",
                "message": f"emulated HTTP {status} (request id: emu-{status})",
                "type": "comet_api_error",
            }
        }
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls(status=status, body=json.dumps(envelope).encode(), headers=headers)

    @classmethod
    def html(cls, status: int = 200) -> Fault:
        return cls(status=status, body=b"<html><body>Not the API</body></html>", content_type="text/html")

    @classmethod
    def application_error(cls, code: int = 404, msg: str = "task not found") -> Fault:
        return cls(body=json.dumps({"code": code, "msg": msg, "data": None}).encode())

    @classmethod
    def answer(cls, data: dict[str, Any] | None) -> Fault:
        return cls(body=json.dumps({"code": 200, "msg": "success", "data": data}).encode())

    @classmethod
    def envelope(cls, data: dict[str, Any]) -> Fault:
        """Today's answer: the task envelope around `data`."""
        return cls(body=json.dumps({"code": "success", "message": "", "data": data}).encode())

    @classmethod
    def envelope_error(cls, code: str = "task_not_exist", message: str = "task_not_exist", status: int = 400) -> Fault:
        """Today's error answer: the same envelope with another `code`."""
        return cls(status=status, body=json.dumps({"code": code, "message": message, "data": None}).encode())

    @classmethod
    def bare(cls, task: dict[str, Any], status: int = 200) -> Fault:
        """A bare task object, as Runway's own API answers."""
        return cls(status=status, body=json.dumps(task).encode())


@dataclass
class EmulatedTask:
    task_id: str
    script: list[str]  # provider status per poll; the last one repeats
    video_size: int = 256 * 1024
    poster: bool = True
    last_frame: bool = True
    with_state: bool = True
    fail_message: str = "Generation failed: content moderation"
    fail_code: str = "SAFETY.INPUT.TEXT"  # Runway's failureCode
    prompt: str = "a cat"
    dialect: str = "feed-2024"  # what POST /runway/feed answers; GET /v1/tasks/{id} is always Runway's
    outputs: int = 1  # output videos when it succeeds (Runway's `output` array)
    not_found_polls: int = 0  # the first polls answer "no such task", as a brand-new id may
    polls: int = 0
    family: str = "runway"  # whose task: its query path and answers (emulated_families)
    content_redirect: bool = False  # Sora/Veo: the content endpoint redirects to the CDN instead of streaming

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown family {self.family!r}; one of {', '.join(FAMILIES)}")
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {self.dialect!r}; one of {', '.join(DIALECTS)}")
        unknown = [step for step in self.script if step not in STEP_WORDS]
        if unknown:
            raise ValueError(f"unknown script steps {unknown}; use {', '.join(STEP_WORDS)}")

    def status_now(self) -> str:
        return self.script[min(max(0, self.polls - self.not_found_polls), len(self.script) - 1)]


class FeedEmulator:
    """The feed and its CDN on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(
        self,
        api_key: str = "emulated-key",
        *,
        runway_api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        default_script: str | None = None,
        default_dialect: str = "feed-2024",
        media_bytes_per_second: float | None = None,
    ) -> None:
        self.api_key = api_key  # the gateway's key
        # Runway's own API (its own origin, `runway_url`) takes this key (default: the gateway's).
        self.runway_api_key = runway_api_key or api_key
        self.latency = latency
        # A task id nobody scripted: "not found" (as the real feed), or this script (`runway-archiver local`).
        self.default_script = default_script
        self.default_dialect = default_dialect
        # The CDN's bandwidth per download (None: as fast as loopback goes).
        self.media_bytes_per_second = media_bytes_per_second
        self.tasks: dict[str, EmulatedTask] = {}
        self.feed_faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.media_faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.requests: list[tuple[str, str]] = []
        self.feed_headers: list[dict[str, str]] = []
        # Every request to any of the three origins: ("gateway" | "runway" | "cdn", path, its Authorization or "").
        self.authorizations: list[tuple[str, str, str]] = []
        # Every media request: which server ("api" or "cdn"), its path, and whether it carried Authorization.
        self.media_requests: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        # The other families' CDN: another origin (port), so a key meant for the API is seen if it leaks here.
        self._cdn = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._cdn.daemon_threads = True
        # Runway's own API: a third origin, so a key sent to the wrong API is seen (and refused).
        self._runway = ThreadingHTTPServer((host, 0), _handler_for(self))
        self._runway.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._cdn_thread: threading.Thread | None = None
        self._runway_thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stack_parameters(self, provider: str = "cometapi") -> dict[str, str]:
        """The template parameters of a stack that uses this emulator: its feed (CometAPI's, or
        Runway's API with `provider="runway"`), and its CDN's host let through the address guard
        (the CDN lives on the emulator's own, private, address)."""
        host = self._server.server_address[0]
        parameters = {"CometApiBaseUrl": self.base_url, "AllowedPrivateNetworks": f"{host!s}/32"}
        if provider != "cometapi":
            parameters.update({"Provider": provider, "RunwayApiBaseUrl": self.runway_url})
        return parameters

    @property
    def cdn_url(self) -> str:
        host, port = self._cdn.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def runway_url(self) -> str:
        """Runway's own API (GET /v1/tasks/{id}, `runway_api_key`), apart from the gateway."""
        host, port = self._runway.server_address[:2]
        return f"http://{host!s}:{port}"

    def is_cdn(self, server: object) -> bool:
        return server is self._cdn

    def is_runway_api(self, server: object) -> bool:
        return server is self._runway

    def start(self) -> FeedEmulator:
        self._thread = serve_in_background(self._server, "feed-emulator")
        self._cdn_thread = serve_in_background(self._cdn, "feed-emulator-cdn")
        self._runway_thread = serve_in_background(self._runway, "runway-api")
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._cdn.shutdown()
        self._cdn.server_close()
        self._runway.shutdown()
        self._runway.server_close()

    def __enter__(self) -> FeedEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting ------------------------------------------------------------------------
    def add_task(self, task_id: str, script: list[str] | str, **options: Any) -> EmulatedTask:
        steps = script.split() if isinstance(script, str) else list(script)
        task = EmulatedTask(task_id=task_id, script=steps, **options)
        with self._lock:
            self.tasks[task_id] = task
        return task

    def set_status(self, task_id: str, status: str, **options: Any) -> EmulatedTask:
        """The task answers `status` (a script step) at every poll from now on, as when it moves on
        at the provider; a task not scripted yet is added with `options` (its dialect, outputs...)."""
        if status not in STEP_WORDS:
            raise ValueError(f"unknown status {status!r}; use {', '.join(STEP_WORDS)}")
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                task = self.tasks[task_id] = EmulatedTask(task_id=task_id, script=[status], **options)
            else:
                task.script = [status]
            return task

    def fail_feed(self, task_id: str, *faults: Fault) -> None:
        with self._lock:
            self.feed_faults[task_id].extend(faults)

    def fail_media(self, path: str, *faults: Fault) -> None:
        with self._lock:
            self.media_faults[path].extend(faults)

    def polls(self, task_id: str) -> int:
        """Polls of the task, on the feed (POST) and on Runway's API (GET)."""
        asked = {f"{prefix}:{task_id}" for prefix in ("feed", *FAMILIES)}
        return sum(1 for method, path in self.requests if path in asked)

    def media_url(self, task_id: str, name: str) -> str:
        return f"{self.base_url}/media/{task_id}/{name}"

    def finish(self, task_id: str) -> dict[str, Any]:
        """The task ends at the provider now (its script's last status): the callback body it sends,
        the task object of the task's dialect without the envelope's `code` and `message`."""
        with self._lock:
            task = self.tasks[task_id]
            task.polls = max(task.polls, task.not_found_polls + len(task.script) - 1)
            return self.feed_object(task, task.script[-1])

    def call_back(self, task_id: str, url: str) -> tuple[int, str]:
        """Finish the task and POST its `data` object to `url`, as the provider's callback does."""
        from .function_url import post_json

        return post_json(url, self.finish(task_id))

    # -- answers --------------------------------------------------------------------------
    def feed_answer(self, task_id: str) -> Fault:
        """What POST /runway/feed answers now, in the task's dialect."""
        step = self._next_step(task_id)
        if isinstance(step, Fault):
            return step
        if step is None:
            return Fault.application_error(404, f"task {task_id} not found")
        task, status = step
        if status is None:
            if task.dialect == "feed-2024":
                return Fault.application_error(404, f"task {task_id} not found")
            return Fault.envelope_error()
        if task.dialect == "feed-2024":
            return Fault.answer(self.task_data(task, status))
        return Fault.envelope(self.feed_object(task, status))

    def runway_answer(self, task_id: str) -> Fault:
        """What Runway's GET /v1/tasks/{id} answers now: its bare task object, or 404."""
        step = self._next_step(task_id)
        if isinstance(step, Fault):
            return step
        task, status = step if step else (None, None)
        if task is None or status is None:
            return Fault.bare({"error": "Task not found"}, status=404)
        return Fault.bare(self.runway_task(task, status))

    def family_answer(self, route: Route) -> Fault:
        """What a family's query path answers now: its sample for the task's step, or 404."""
        if route.family == "retrieve":
            with self._lock:
                task = self.tasks.get(route.task_id)
            if task is None or task.family != "minimax":
                return Fault.bare({"file": None, "base_resp": {"status_code": 1004, "status_msg": "file not found"}})
            return Fault.bare(emulated_families.retrieve_answer(task.task_id, self.family_media(task).videos[0]))
        family = route.family
        if family == "videos":  # the shared route: the task's own family (a new id: Sora's)
            with self._lock:
                known = self.tasks.get(route.task_id)
            family = known.family if known else "sora"
        step = self._next_step(route.task_id, family)
        if isinstance(step, Fault):
            return step
        task, status = step if step else (None, None)
        if task is None or status is None:
            return Fault.bare({"error": {"message": "Task not found", "type": "invalid_request_error"}}, status=404)
        media = self.family_media(task)
        word = STEP_WORDS[status]
        native = emulated_families.answer(task.family, task.task_id, word, media)
        if task.dialect == "task-envelope" and task.family in emulated_families.ENVELOPE_FAMILIES:
            return Fault.bare(emulated_families.enveloped(task.family, task.task_id, word, native, media))
        return Fault.bare(native)

    def family_media(self, task: EmulatedTask) -> emulated_families.Media:
        """The task's media on the CDN (Sora's and Veo's come from the content endpoint instead)."""
        names = ["video.mp4", *(f"video_{n}.mp4" for n in range(2, task.outputs + 1))]
        cdn = f"{self.cdn_url}/media/{task.task_id}"
        return emulated_families.Media(
            videos=[f"{cdn}/{name}" for name in names],
            poster=f"{cdn}/poster.png" if task.poster else None,
            last_frame=f"{cdn}/last_frame.png" if task.last_frame else None,
        )

    def content_answer(self, route: Route) -> Fault | str:
        """The content endpoint: a refusal (Fault), or the media path to serve (or redirect to)."""
        with self._lock:
            task = self.tasks.get(route.task_id)
        if task is None or task.family not in emulated_families.CONTENT_FAMILIES:
            return Fault.bare({"error": {"message": "Task not found", "type": "invalid_request_error"}}, status=404)
        word = STEP_WORDS[task.status_now()]
        if word != "succeeded":
            return Fault.bare(emulated_families.content_not_ready(word), status=400)
        name = "poster.webp" if route.variant == "thumbnail" else "video.mp4"
        return f"/media/{task.task_id}/{name}"

    def _next_step(self, task_id: str, family: str = "runway") -> Fault | tuple[EmulatedTask, str | None] | None:
        """A queued fault, or the task and its status at this poll (None: "no such task" yet)."""
        with self._lock:
            queued = self.feed_faults.get(task_id)
            if queued:
                return queued.popleft()
            task = self.tasks.get(task_id)
            if task is None and self.default_script is not None:
                task = self.tasks[task_id] = EmulatedTask(
                    task_id=task_id, script=self.default_script.split(), dialect=self.default_dialect, family=family
                )
            if task is None:
                return None
            status = task.status_now() if task.polls >= task.not_found_polls else None
            task.polls += 1
        return task, status

    def feed_object(self, task: EmulatedTask, status: str) -> dict[str, Any]:
        """The feed's task object in the task's dialect: the 2024 `data`, or the envelope's `data`."""
        if task.dialect == "feed-2024":
            return self.task_data(task, status)
        word = STEP_WORDS[status]
        nested = self.task_data(task, status) if task.dialect.endswith("feed-2024") else self.runway_task(task, status)
        urls = self.output_urls(task) if word == "succeeded" else []
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "action": "IMAGE_TO_VIDEO",
            "status": ENVELOPE_STATUSES.get(word, "UNKNOWN"),
            "fail_reason": task.fail_message if word == "failed" else "",
            "submit_time": 1773366766,
            "start_time": 0 if word in ("queued", "throttled") else 1773366770,
            "finish_time": 1773366900 if word in ("succeeded", "failed", "cancelled") else 0,
            "progress": {"running": "40%", "succeeded": "100%"}.get(word, "0%"),
            "data": nested,
        }
        if urls:
            data["result_url"] = urls[0]
        return data

    def runway_task(self, task: EmulatedTask, status: str) -> dict[str, Any]:
        """Runway's own task object at this status."""
        word = STEP_WORDS[status]
        runway: dict[str, Any] = {
            "id": task.task_id,
            "status": RUNWAY_STATUSES.get(word, "PAUSED"),
            "createdAt": "2026-11-24T12:00:00.000Z",
        }
        if word == "running":
            runway["progress"] = 0.4
        elif word == "succeeded":
            runway["output"] = self.output_urls(task)
        elif word == "failed":
            runway["failure"] = task.fail_message
            runway["failureCode"] = task.fail_code
        return runway

    def output_urls(self, task: EmulatedTask) -> list[str]:
        names = ["video.mp4", *(f"video_{n}.mp4" for n in range(2, task.outputs + 1))]
        return [self.media_url(task.task_id, name) for name in names]

    def task_data(self, task: EmulatedTask, status: str) -> dict[str, Any]:
        """The 2024 page's `data` object at this status (a code "0".."3", or a script word)."""
        status = LEGACY_CODES.get(status, "7" if status == "unknown" else status)
        finished = status == "3"
        created = "0" if status == "0" else "1724313052"
        data: dict[str, Any] = {
            "task_id": task.task_id,
            "status": status,
            "prompt": task.prompt,
            "prompt_en": task.prompt,
            "video_url": self.media_url(task.task_id, "video.mp4") if finished else None,
            "poster": self.media_url(task.task_id, "poster.png") if finished and task.poster else None,
            "last_frame": self.media_url(task.task_id, "last_frame.png") if finished and task.last_frame else None,
            "msg": task.fail_message if status == "2" else None,
            "point": "200",
            "refund": "1" if status == "2" else "0",
            "create_time": created,
            "update_time": str(1724313052 + 60 * task.polls),
        }
        if task.with_state:
            data["state"] = STATE_WORDS.get(status, "")
        return data

    def media_size(self, path: str) -> int | None:
        """Size of `/media/{task_id}/{name}`, or None when there is no such file."""
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "media":
            return None
        task = self.tasks.get(parts[1])
        if task is None:
            return None
        if parts[2].startswith("video"):
            return task.video_size
        return 32 * 1024 + len(parts[2])

    def next_media_fault(self, path: str) -> Fault | None:
        with self._lock:
            queued = self.media_faults.get(path)
            return queued.popleft() if queued else None


def media_bytes(path: str, size: int) -> Iterator[bytes]:
    """The body served for `path`: a seeded block repeated, then cut to `size` bytes."""
    seed = hashlib.sha256(path.encode()).digest()
    block = (seed * (_BLOCK // len(seed) + 1))[:_BLOCK]
    sent = 0
    while sent < size:
        chunk = block[: min(_BLOCK, size - sent)]
        sent += len(chunk)
        yield chunk


def media_sha256(path: str, size: int) -> str:
    digest = hashlib.sha256()
    for chunk in media_bytes(path, size):
        digest.update(chunk)
    return digest.hexdigest()


class _FeedHandler(BaseHTTPRequestHandler):
    emulator: FeedEmulator  # set on the subclass each server makes
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, the body waits for
    # the client's delayed ACK, 40 ms per request on Linux, which no real server adds.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: tests and the demo print what matters

    def _origin(self) -> str:
        if self.emulator.is_cdn(self.server):
            return "cdn"
        return "runway" if self.emulator.is_runway_api(self.server) else "gateway"

    def _record_authorization(self) -> None:
        with self.emulator._lock:
            self.emulator.authorizations.append((self._origin(), self.path, self.headers.get("Authorization", "")))

    def do_POST(self) -> None:
        self._record_authorization()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.emulator.is_runway_api(self.server):
            self._not_here()
            return
        if self.path != "/runway/feed":
            self._send(
                Fault(
                    status=301,
                    body=b"<html>Moved</html>",
                    content_type="text/html",
                    headers={"Location": "https://example.invalid/"},
                )
            )
            return
        if self.emulator.latency:
            time.sleep(self.emulator.latency)
        try:
            task_id = str(json.loads(raw)["task_id"])
        except (ValueError, KeyError, TypeError):
            self._send(Fault.http(400))
            return
        with self.emulator._lock:
            self.emulator.requests.append(("POST", f"feed:{task_id}"))
            self.emulator.feed_headers.append(dict(self.headers.items()))
        if self.headers.get("Authorization") != f"Bearer {self.emulator.api_key}":
            self._send(Fault.http(401))
            return
        self._send(self.emulator.feed_answer(task_id))

    def do_GET(self) -> None:
        self._record_authorization()
        # Runway's API answers /v1/tasks/ only, and the gateway never does: each is its own origin.
        if self.emulator.is_runway_api(self.server) != self.path.startswith("/v1/tasks/"):
            self._not_here()
            return
        if self.path.startswith("/v1/tasks/"):
            self._runway_task(unquote(self.path.removeprefix("/v1/tasks/")))
            return
        route = route_of(self.path) if not self.emulator.is_cdn(self.server) else None
        if route is not None:
            self._family(route)
            return
        self._media(self.path)

    def _media(self, path: str, *, fault_path: str | None = None) -> None:
        server = "cdn" if self.emulator.is_cdn(self.server) else "api"
        with self.emulator._lock:
            self.emulator.requests.append(("GET", self.path))
            self.emulator.media_requests.append((server, self.path, "Authorization" in self.headers))
        fault = self.emulator.next_media_fault(fault_path or path)
        size = self.emulator.media_size(path)
        if fault is not None and not fault.stream:
            self._send(fault)
        elif size is None:
            self._send(Fault(status=404, body=b"not found", content_type="text/plain"))
        else:
            self._stream_media(size, fault or Fault(stream=True), path)

    def _family(self, route: Route) -> None:
        """Another family's query path (Bearer key required), or a media lookup that needs the key."""
        if route.family == "content":
            if self.headers.get("Authorization") != f"Bearer {self.emulator.api_key}":
                with self.emulator._lock:
                    self.emulator.media_requests.append(("api", self.path, "Authorization" in self.headers))
                self._send(Fault.http(401))
                return
            served = self.emulator.content_answer(route)
            if isinstance(served, Fault):
                with self.emulator._lock:
                    self.emulator.media_requests.append(("api", self.path, True))
                self._send(served)
                return
            with self.emulator._lock:
                task = self.emulator.tasks[route.task_id]
            if task.content_redirect:
                with self.emulator._lock:
                    self.emulator.media_requests.append(("api", self.path, True))
                self._send(Fault(status=302, body=b"", headers={"Location": self.emulator.cdn_url + served}))
                return
            self._media(served, fault_path=self.path)
            return
        with self.emulator._lock:
            if route.family != "retrieve":
                self.emulator.requests.append(("GET", f"{self._family_of(route)}:{route.task_id}"))
            self.emulator.feed_headers.append(dict(self.headers.items()))
        if self.emulator.latency:
            time.sleep(self.emulator.latency)
        if self.headers.get("Authorization") != f"Bearer {self.emulator.api_key}":
            self._send(Fault.http(401))
            return
        self._send(self.emulator.family_answer(route))

    def _family_of(self, route: Route) -> str:
        if route.family != "videos":
            return route.family
        task = self.emulator.tasks.get(route.task_id)
        return task.family if task else "sora"

    def _not_here(self) -> None:
        """A path the other API serves, asked of this one: recorded (headers too), and 404."""
        with self.emulator._lock:
            self.emulator.requests.append((self.command, f"elsewhere:{self.path}"))
            self.emulator.feed_headers.append(dict(self.headers.items()))
        self._send(Fault(status=404, body=b"not found", content_type="text/plain"))

    def _runway_task(self, task_id: str) -> None:
        """Runway's GET /v1/tasks/{id}: Bearer key and API version required, as Runway does."""
        with self.emulator._lock:
            self.emulator.requests.append(("GET", f"runway:{task_id}"))
            self.emulator.feed_headers.append(dict(self.headers.items()))
        if self.headers.get("Authorization") != f"Bearer {self.emulator.runway_api_key}":
            self._send(Fault.bare({"error": "Unauthorized"}, status=401))
        elif self.headers.get("X-Runway-Version") != RUNWAY_API_VERSION:
            self._send(Fault.bare({"error": "X-Runway-Version header is missing or unsupported"}, status=400))
        else:
            self._send(self.emulator.runway_answer(task_id))

    def _stream_media(self, size: int, how: Fault, path: str | None = None) -> None:
        path = path or self.path
        suffix = path[path.rfind(".") :]
        content_type = how.stream_content_type or CONTENT_TYPES.get(suffix, "application/octet-stream")
        length = {"Transfer-Encoding": "chunked"} if how.chunked else {"Content-Length": str(size)}
        headers = {"Content-Type": content_type, **length}
        if how.header_drip_seconds:
            if not self._drip_headers(headers, how.header_drip_seconds):
                return
        else:
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
        try:
            sent = self._write_body(size, how, path)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a dripped body it would not wait for)
            return
        if sent < size:
            self.close_connection = True  # the client sees a body cut short
        elif how.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _write_body(self, size: int, how: Fault, path: str) -> int:
        """The media body, in pieces, as `how` says (cut, dripped, chunked, bandwidth); the bytes sent."""
        limit = size if how.truncate_at is None else how.truncate_at
        sent = 0
        started = time.monotonic()
        bandwidth = self.emulator.media_bytes_per_second
        for chunk in media_bytes(path, size):
            for start in range(0, len(chunk), how.drip_piece):
                piece = chunk[start : start + how.drip_piece][: max(0, limit - sent)]
                if how.drip_seconds:
                    time.sleep(how.drip_seconds)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if how.chunked else piece)
                sent += len(piece)
                if bandwidth and (ahead := sent / bandwidth - (time.monotonic() - started)) > 0:
                    time.sleep(ahead)
                if sent >= limit:
                    return sent
        return sent

    def _drip_headers(self, headers: dict[str, str], pause: float) -> bool:
        """Send the status line and headers one byte at a time, as a host that stalls a client would;
        False when the client hung up before the last one."""
        self.close_connection = True
        lines = ["HTTP/1.1 200 OK", *(f"{name}: {value}" for name, value in headers.items()), "Connection: close"]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        for at in range(len(head)):
            time.sleep(pause)
            try:
                self.wfile.write(head[at : at + 1])
            except OSError:
                return False
        return True

    def _send(self, fault: Fault) -> None:
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            self.close_connection = True
            return
        body = fault.body or b""
        self.send_response(fault.status)
        self.send_header("Content-Type", fault.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in fault.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if fault.truncate_at is not None:
            self.wfile.write(body[: fault.truncate_at])
            self.close_connection = True  # a reset in the middle of the answer
            return
        self.wfile.write(body)


def _handler_for(emulator: FeedEmulator) -> type[BaseHTTPRequestHandler]:
    return type("FeedHandler", (_FeedHandler,), {"emulator": emulator})
