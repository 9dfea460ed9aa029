"""`RunSummary`: what one run did, and the metric each of its counters is emitted as.

The handler returns the summary; `emit_run_metrics` writes it as EMF metrics. A counter declared
with `metric_field` names its metric where it is declared, so a counter and its metric name cannot
drift apart.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from .observability import metrics

_METRIC = "metric"  # the key of a RunSummary field's metadata that names its metric


def metric_field(metric: str, unit: MetricUnit = MetricUnit.Count) -> Any:
    """A `RunSummary` counter (0 to start with) that is emitted as `metric`."""
    return field(default=0, metadata={_METRIC: (metric, unit)})


@dataclass
class RunSummary:
    """What one run did; the handler returns it. A counter declared with `metric_field` is also
    emitted as that metric (`emit_run_metrics`), under that name only."""

    run_id: str
    now: str
    due: int = 0
    discovery_items_read: int = metric_field("DiscoveryItemsRead")
    claimed: int = 0
    claim_conflicts: int = metric_field("ClaimConflicts")
    polled: int = metric_field("TasksPolled")
    poll_errors: int = metric_field("PollErrors")
    still_pending: int = metric_field("TasksStillPending")
    archived: int = metric_field("TasksArchived")
    failed: int = metric_field("TasksFailed")
    expired: int = metric_field("TasksExpired")
    archive_errors: int = metric_field("ArchiveErrors")
    bytes_archived: int = metric_field("BytesArchived", MetricUnit.Bytes)
    announced: int = metric_field("EventsPublished")
    publish_errors: int = metric_field("PublishErrors")
    task_errors: int = metric_field("TaskErrors")
    left_for_next_run: int = metric_field("TasksLeftForNextRun")
    dispatched: int = metric_field("TasksDispatched")  # handed to the work queue
    # Since first seen, over the tasks this run claimed. Every pending task is claimed at least every
    # MAX_POLL_INTERVAL_SECONDS, so the maximum of this over that window is the age of the oldest
    # pending task: the "tasks stuck" signal.
    oldest_claimed_age_seconds: int = metric_field("OldestPendingTaskAgeSeconds", MetricUnit.Seconds)
    configuration_error: str | None = None
    ignored_event_time: str | None = None  # the event's time, when it was too far from the wall clock to use
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def saw_age(self, seconds: int) -> None:
        with self._lock:
            self.oldest_claimed_age_seconds = max(self.oldest_claimed_age_seconds, seconds)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


def summary_metrics(summary_type: type[RunSummary]) -> dict[str, tuple[str, MetricUnit]]:
    """Field name -> (metric name, unit) of every counter of a run summary that is a metric."""
    return {f.name: f.metadata[_METRIC] for f in fields(summary_type) if _METRIC in f.metadata}


def emit_run_metrics(summary: RunSummary) -> None:
    """The run summary as EMF metrics (flushed when the handler returns)."""
    emitted = metrics()
    for name, (metric, unit) in summary_metrics(type(summary)).items():
        emitted.add_metric(name=metric, unit=unit, value=getattr(summary, name))
    # A configuration error (401, unreadable key secret, redirect) leaves the run "successful":
    # this is what ConfigurationErrorsAlarm watches (and the dashboard shows), so it does not wait for
    # the stuck-tasks alarm.
    emitted.add_metric(name="ConfigurationErrors", unit=MetricUnit.Count, value=1 if summary.configuration_error else 0)
