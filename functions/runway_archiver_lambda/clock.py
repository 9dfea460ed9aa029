"""Times as the item, the events and the CLI write them: ISO 8601 in UTC, to the second, with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime | float) -> str:
    """`2026-11-24T12:00:00Z` for an aware datetime or for epoch seconds."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
