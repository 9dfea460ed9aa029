"""Lambda entry point: the scheduled event in, one poller run, a summary out."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..observability import entry_point, logger
from ..run import scheduled_run
from ..summary import emit_run_metrics
from ..wiring import build_poller

__all__ = ["build_poller", "lambda_handler", "logger", "run_time"]

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aws_lambda_powertools.utilities.typing import LambdaContext

    from ..poller import Poller

_poller: Poller | None = None


def run_time(event: Mapping[str, Any] | None) -> datetime:
    """'Now' for this run: the scheduled time the event carries, else the wall clock."""
    for name in ("scheduled_time", "time"):
        raw = (event or {}).get(name)
        if raw in (None, ""):
            continue
        try:
            moment = datetime.fromisoformat(str(raw))
        except ValueError as exc:
            raise ValueError(f"event field {name!r} is not an ISO 8601 time: {str(raw)[:40]!r}") from exc
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.now(UTC)


@entry_point
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _poller  # noqa: PLW0603 - built once per container, reused by warm invocations
    now = run_time(event)
    if _poller is None:
        _poller = build_poller(os.environ)
    summary = scheduled_run(_poller, now, remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000)
    emit_run_metrics(summary)
    logger.info("run finished", extra={"summary": summary.as_dict()})
    return summary.as_dict()
