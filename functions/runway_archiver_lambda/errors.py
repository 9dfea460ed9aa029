"""How long an error is worth waiting out: the one decision every failure needs."""

from __future__ import annotations

import enum


class Persistence(enum.Enum):
    """What a failed poll or copy means for its task."""

    TRANSIENT = "transient"  # retried at later polls until the task expires (5xx, timeouts, resets)
    PERSISTENT = "persistent"  # retried for a grace period, then the task fails (media gone, task unknown)
    PERMANENT = "permanent"  # the task fails now (a refused address, media over the size limit)
