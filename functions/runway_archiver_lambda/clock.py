"""Times as the item, the events and the CLI write them: ISO 8601 in UTC, to the second, with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(moment: datetime | float, timespec: str = "seconds") -> str:
    """`2026-11-24T12:00:00Z` for an aware datetime or for epoch seconds (a run's own time keeps the
    precision it was given: `timespec="auto"`)."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
