"""Callback function: the provider's "task finished" call, taken only as a hint.

The body is never trusted. A callback that passes the token check and names a known PENDING task
becomes a work request on the work queue; the worker then re-reads the task from the feed API
(the authority) and archives it through the poller's own claim, so a callback racing a scheduled
run still gives one archive and one event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .apikey import SecretUnavailable
from .feed import family_named, known_families
from .lifecycle import VALID_TASK_ID
from .tasks import FORGOTTEN, PENDING
from .workqueue import CALLBACK, WorkRequest

if TYPE_CHECKING:
    from .apikey import CachedSecret
    from .config import CallbackSettings
    from .tasks import TaskStore
    from .workqueue import WorkQueue

TOKEN_HEADER = "x-archiver-token"  # noqa: S105 - the header's name, not a secret
TOKEN_PARAMETER = "token"  # noqa: S105 - the query parameter's name, not a secret
# The callback URL given to a model's provider may name the tasks' model family (`&provider=kling`):
# used only when the callback registers a task it does not know (ALLOW_CALLBACK_REGISTRATION).
PROVIDER_PARAMETER = "provider"


@dataclass(frozen=True)
class Reply:
    """What the sender is told: 2xx accepted, 4xx refused for good, 503 try again later."""

    status: int
    outcome: str  # a metric-friendly word: accepted, unchanged, registered, unauthorized, ...
    message: str
    task_id: str | None = None

    def body(self) -> str:
        return json.dumps({"message": self.message, **({"task_id": self.task_id} if self.task_id else {})})


class Callbacks:
    def __init__(self, settings: CallbackSettings, store: TaskStore, queue: WorkQueue, token: CachedSecret) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.token = token

    def accept(self, presented_token: str | None, body: bytes, provider: str | None = None) -> Reply:
        checked = self._check(presented_token, body)
        if isinstance(checked, Reply):
            return checked
        family = family_named(provider) if provider is not None else None
        if provider is not None and family is None:
            return Reply(400, "malformed", f"unknown provider {provider[:40]!r}: known are {known_families()}", checked)
        try:
            return self._hint(checked, family.name if family else None)
        except (ClientError, BotoCoreError):
            return Reply(503, "unavailable", "the archive could not take the callback; try again later", checked)

    def _check(self, presented_token: str | None, body: bytes) -> str | Reply:
        """The task id the callback names, or the refusal it deserves."""
        try:
            expected = self.token.current()
        except SecretUnavailable:
            return Reply(503, "unavailable", "the callback token cannot be read; try again later")
        if not presented_token or not _same_secret(presented_token, expected):
            return Reply(401, "unauthorized", "missing or wrong callback token")
        if len(body) > self.settings.max_body_bytes:
            return Reply(413, "too_large", f"body over {self.settings.max_body_bytes} bytes")
        task_id = _task_id(body)
        if task_id is None:
            return Reply(400, "malformed", "body must be a JSON object with a string task_id")
        if not VALID_TASK_ID.fullmatch(task_id):
            return Reply(400, "malformed", "task_id is not a valid identifier")
        return task_id

    def _hint(self, task_id: str, model_family: str | None = None) -> Reply:
        item = self.store.get(task_id)
        if item is None:
            if not self.settings.allow_registration:
                return Reply(404, "unknown", "unknown task id", task_id)
            self.store.register(task_id, model_family)
            outcome = "registered"
        elif item.get("status") == FORGOTTEN:
            # Its tombstone: the task was erased on purpose; a late callback must not bring it back.
            return Reply(410, "forgotten", "the task was erased from the archive; it is not archived again", task_id)
        elif item.get("status") != PENDING:
            return Reply(200, "unchanged", f"task already {item.get('status')}", task_id)
        else:
            outcome = "accepted"
        if self.queue.send([WorkRequest(task_id, reason=CALLBACK)]):
            return Reply(503, "unavailable", "the work queue refused the request; try again later", task_id)
        return Reply(202, outcome, "accepted; the task is re-read from the feed API and archived", task_id)


def _same_secret(presented: str, expected: str) -> bool:
    # Digests have one length and compare_digest takes constant time: neither length nor content leaks.
    return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), hashlib.sha256(expected.encode()).digest())


def _task_id(body: bytes) -> str | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    # The callback carries the task object (the 2024 `data`, or the task envelope's `data`, whose own
    # `data` is the upstream's task); tolerate the whole 2024 answer `{code, msg, data}` too.
    for candidate in (payload, payload.get("data")):
        task_id = candidate.get("task_id") if isinstance(candidate, dict) else None
        if isinstance(task_id, str) and task_id:
            return task_id
    return None
