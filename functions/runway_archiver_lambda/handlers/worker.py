"""Lambda entry point of the worker: work requests from the SQS work queue, a partial batch response.

The records of one batch are worked on concurrently (polls are mostly waiting), each one through
the scheduled run's own claim, poll, archive, record and announce path (`lifecycle.TaskLifecycle`),
within a run's time budget (`run.Run`, without discovery). A record is reported as failed,
so SQS delivers it again, only when nothing could be attempted for it (the claim call failed, or
the time left was too short); a malformed body fails every time and ends in the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response

from ..observability import entry_point, logger
from ..run import Run
from ..summary import emit_run_metrics
from ..wiring import build_poller
from ..workqueue import WorkRequest

__all__ = ["NotAttempted", "lambda_handler", "logger"]

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from ..poller import Poller

# An entire batch failing is reported as such (every record comes back), not raised as an error.
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

_poller: Poller | None = None


class NotAttempted(Exception):
    """Nothing was done for this request; SQS delivers it again after its visibility timeout."""


@entry_point
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _poller  # noqa: PLW0603 - built once per container, reused by warm invocations
    if _poller is None:
        _poller = build_poller(os.environ)
    # No event time here: the run's clock is the wall clock.
    run = Run(_poller, None, remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000)
    records = event.get("Records") or []
    workers = max(1, min(_poller.settings.poll_concurrency, len(records)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="work") as pool:
        response = async_process_partial_response(
            event=event, record_handler=_record_handler(run, pool), processor=processor, context=context
        )
    emit_run_metrics(run.summary)
    logger.info(
        "batch finished",
        extra={
            "records": len(records),
            "returned": len(response["batchItemFailures"]),
            "summary": run.summary.as_dict(),
        },
    )
    return dict(response)


def _record_handler(run: Run, pool: ThreadPoolExecutor) -> Callable[[SQSRecord], Awaitable[None]]:
    async def handle(record: SQSRecord) -> None:
        request = WorkRequest.decode(record.body)  # BadWorkRequest: the record fails, then dead-letters
        attempted = await asyncio.get_running_loop().run_in_executor(pool, run.process_request, request)
        if not attempted:
            raise NotAttempted(request.task_id)

    return handle
