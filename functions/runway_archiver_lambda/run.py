"""One run of the archiver: announce leftovers, discover due tasks, keep some and hand out the rest, in time.

`Run` is one invocation: its clock, its summary (`summary.RunSummary`), discovery, hand-out to the
work queue and the time budget, over what every run shares (`poller.Poller`: settings, clients, the
copy slots). `scheduled_run` is the scheduled function's whole run; the worker feeds a `Run` with
work requests (`Run.process_request`). What happens to each task it keeps (claim, poll, archive,
record, announce) is `lifecycle.TaskLifecycle`.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .clock import iso_utc
from .lifecycle import TaskLifecycle
from .observability import logger
from .summary import RunSummary
from .workqueue import SQS_BATCH_LIMIT, WorkRequest

if TYPE_CHECKING:
    from collections.abc import Callable

    from .poller import Poller


# How far a run's clock (the event's time) may be from the wall clock. A scheduled tick starts at most
# about 4 minutes after its time: the Scheduler retries it for 120 s (RetryPolicy MaximumEventAgeInSeconds)
# and Lambda's asynchronous queue keeps it 120 s more (EventInvokeConfig). An event further off either way
# (the console's test event says 1970) is not a tick: the run uses the wall clock instead.
EVENT_TIME_TOLERANCE_SECONDS = 300


def scheduled_run(poller: Poller, now: datetime, remaining_seconds: Callable[[], float]) -> RunSummary:
    """The scheduled run: announce leftovers, then work on (or hand out) every due task."""
    run = Run(poller, now, remaining_seconds)
    run.announce_leftovers()
    run.poll_due_tasks()
    return run.summary


class Run:
    """One invocation: its clock and summary, discovery, hand-out to the work queue, and the time budget."""

    def __init__(self, poller: Poller, now: datetime | None, remaining_seconds: Callable[[], float]) -> None:
        self.p = poller
        self.settings = poller.settings
        wall = datetime.fromtimestamp(int(poller.wall_clock()), UTC)
        # Expiry, back-off and first-seen times follow this clock: only a tick's own time may set it.
        event_time = now
        ignored = now is not None and abs((now - wall).total_seconds()) > EVENT_TIME_TOLERANCE_SECONDS
        now = wall if now is None or ignored else now
        self.now = now
        self.now_epoch = int(now.timestamp())
        self.now_iso = iso_utc(now, timespec="auto")
        self.remaining_seconds = remaining_seconds
        self.run_id = str(uuid.uuid4())
        self.summary = RunSummary(run_id=self.run_id, now=self.now_iso)
        self.lifecycle = TaskLifecycle(
            poller, run_id=self.run_id, now=now, summary=self.summary, remaining_seconds=remaining_seconds
        )
        self._out_of_time: str | None = None
        if ignored and event_time is not None:
            self.summary.ignored_event_time = iso_utc(event_time, timespec="auto")
            logger.warning(
                "the event's time is too far from the wall clock for a scheduled tick: this run uses the wall clock",
                extra={
                    "event_time": self.summary.ignored_event_time,
                    "wall_clock": self.now_iso,
                    "tolerance_seconds": EVENT_TIME_TOLERANCE_SECONDS,
                },
            )

    # -- discovery ------------------------------------------------------------------------
    def announce_leftovers(self) -> None:
        """Publish outcomes that an earlier run recorded but could not announce."""
        leftovers = self.p.store.unannounced(self.wall_now())
        for task_id in leftovers.task_ids:
            if self.should_stop():
                break
            self.lifecycle.announce_leftover(task_id)

    def poll_due_tasks(self) -> None:
        discovery = self.p.store.due_pending(self.now_epoch, self.wall_now())
        self.summary.add(due=len(discovery.task_ids), discovery_items_read=discovery.items_read)
        logger.info("discovered due tasks", extra={"due": len(discovery.task_ids), "items_read": discovery.items_read})
        if not discovery.task_ids:
            return
        own, handed_out = self.split_work(discovery.task_ids)
        workers = min(self.settings.poll_concurrency, len(discovery.task_ids))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
            # Hand out first, so the workers start while this run polls its own share.
            batches = [handed_out[i : i + SQS_BATCH_LIMIT] for i in range(0, len(handed_out), SQS_BATCH_LIMIT)]
            # list() re-raises nothing: dispatch() and process() keep every error inside.
            list(pool.map(self.dispatch, batches))
            list(pool.map(self.process, own))
        if self.stop_reason:
            logger.warning(
                "run stopped early",
                extra={"reason": self.stop_reason, "left_for_next_run": self.summary.left_for_next_run},
            )

    # -- hand-out -------------------------------------------------------------------------
    def split_work(self, task_ids: list[str]) -> tuple[list[str], list[str]]:
        """The tasks this run keeps and those it hands to the workers (only with a work queue)."""
        threshold = self.settings.fanout_threshold
        if self.p.work_queue is None or len(task_ids) <= threshold:
            return task_ids, []
        return task_ids[:threshold], task_ids[threshold:]

    def dispatch(self, task_ids: list[str]) -> None:
        """Hold each task for the queue with a dispatch claim, then send one message per held task."""
        assert self.p.work_queue is not None
        token = f"dispatch:{self.run_id}"
        try:
            held = [
                task_id
                for task_id in task_ids
                if self.p.store.dispatch(
                    task_id, token, self.now_epoch, self.wall_now(), self.settings.dispatch_lease_seconds
                )
            ]
            rejected = self.p.work_queue.send([WorkRequest(task_id, token=token) for task_id in held])
            for request in rejected:
                self.p.store.undo_dispatch(request.task_id, token)
        except (ClientError, BotoCoreError) as exc:
            # Held tasks whose message was not sent are due again when the dispatch lease runs out.
            self.summary.add(task_errors=1)
            logger.error("handing tasks to the work queue failed", extra={"error": type(exc).__name__})
            return
        self.summary.add(dispatched=len(held) - len(rejected), claim_conflicts=len(task_ids) - len(held))
        if rejected:
            self.summary.add(task_errors=len(rejected))
            logger.error("the work queue refused messages; those tasks are due again", extra={"count": len(rejected)})

    # -- one task, if there is time for it ------------------------------------------------
    def process(self, task_id: str, *, token: str | None = None, from_queue: bool = False) -> bool:
        """Work on one task (`TaskLifecycle.process`) unless the run should stop. False: nothing attempted."""
        if self.should_stop():
            self.summary.add(left_for_next_run=1)
            return False
        return self.lifecycle.process(task_id, token=token, from_queue=from_queue)

    def process_request(self, request: WorkRequest) -> bool:
        """A worker's task. False when nothing was attempted and the message should come back."""
        return self.process(request.task_id, token=request.token, from_queue=True)

    # -- time -----------------------------------------------------------------------------
    @property
    def stop_reason(self) -> str | None:
        """Why the run stops starting tasks: a configuration error (the latest), else the time left."""
        if self.summary.configuration_error is not None:
            return self.summary.configuration_error
        return self._out_of_time

    def should_stop(self) -> bool:
        if self.stop_reason is None and self.remaining_seconds() < self.settings.claim_cutoff_seconds:
            self._out_of_time = "the remaining Lambda time is low"
        return self.stop_reason is not None

    def wall_now(self) -> int:
        # Leases are about real concurrency, so they run on the wall clock, not the event's time.
        return int(self.p.wall_clock())
