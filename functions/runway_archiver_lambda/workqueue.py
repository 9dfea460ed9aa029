"""The work queue: due tasks handed from the scheduled run to the workers, and callback hints.

A message is only a pointer to a task. Whoever receives it still has to claim the task in the
table, so a message delivered twice, late, or racing a scheduled run never causes a second
archive or a second event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_sqs import SQSClient

SQS_BATCH_LIMIT = 10
BACKLOG, CALLBACK = "backlog", "callback"


class BadWorkRequest(ValueError):
    """A message body that is not a work request; it is left to the queue's dead-letter queue."""


@dataclass(frozen=True)
class WorkRequest:
    """Archive this task. `token` names the dispatch claim a scheduled run took for the queue;
    a callback hint has none and claims the task only if no live run holds it."""

    task_id: str
    reason: str = BACKLOG
    token: str | None = None

    def encode(self) -> str:
        body = {"task_id": self.task_id, "reason": self.reason}
        if self.token:
            body["token"] = self.token
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, body: str) -> WorkRequest:
        try:
            message = json.loads(body)
        except ValueError as exc:
            raise BadWorkRequest(f"message body is not JSON: {body[:60]!r}") from exc
        if not isinstance(message, dict):
            raise BadWorkRequest("message body is not a JSON object")
        task_id, reason, token = message.get("task_id"), message.get("reason", BACKLOG), message.get("token")
        if not isinstance(task_id, str) or not task_id:
            raise BadWorkRequest("message has no task_id string")
        if reason not in (BACKLOG, CALLBACK) or not (token is None or isinstance(token, str)):
            raise BadWorkRequest(f"message has an unknown reason or a bad token: {reason!r}")
        return cls(task_id=task_id, reason=reason, token=token or None)


class WorkQueue:
    """Sends work requests to the SQS queue the worker function consumes."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def send(self, requests: Sequence[WorkRequest]) -> list[WorkRequest]:
        """Send in batches of ten; returns the requests SQS did not accept."""
        rejected: list[WorkRequest] = []
        for start in range(0, len(requests), SQS_BATCH_LIMIT):
            batch = requests[start : start + SQS_BATCH_LIMIT]
            response = self._sqs.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "MessageBody": request.encode()} for i, request in enumerate(batch)],
            )
            rejected.extend(batch[int(failure["Id"])] for failure in response.get("Failed", []))
        return rejected
