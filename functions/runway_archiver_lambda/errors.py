"""How long an error is worth waiting out (the one decision every failure needs), and how a refused
conditional write is told apart from a failure."""

from __future__ import annotations

import enum

from botocore.exceptions import ClientError


class Persistence(enum.Enum):
    """What a failed poll or copy means for its task."""

    TRANSIENT = "transient"  # retried at later polls until the task expires (5xx, timeouts, resets)
    PERSISTENT = "persistent"  # retried for a grace period, then the task fails (media gone, task unknown)
    PERMANENT = "permanent"  # the task fails now (a refused address, media over the size limit)


class MediaError(Exception):
    """A media copy (or an address the guard refused) that did not happen, and how long retrying it is worth it."""

    def __init__(self, reason: str, persistence: Persistence = Persistence.TRANSIENT) -> None:
        super().__init__(reason)
        self.reason = reason
        self.persistence = persistence


def is_conditional_check_failed(exc: BaseException) -> bool:
    """DynamoDB refused a write because its condition did not hold: an answer, not a failure."""
    return (
        isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
    )
