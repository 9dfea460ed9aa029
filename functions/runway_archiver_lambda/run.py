"""One run of the archiver: announce leftovers, discover, claim, poll, archive, record, announce."""

from __future__ import annotations

import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from . import events
from .address_guard import AddressRefused
from .errors import Persistence
from .feed import FeedAnswer, FeedError, FeedErrorKind, Progress
from .media import MediaError
from .tasks import ARCHIVED, EXPIRED, FAILED, Claim, LeaseLost, from_dynamo
from .workqueue import WorkRequest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from .config import Settings
    from .events import EventPublisher
    from .feed import FeedClient
    from .media import MediaArchiver, StoredAsset
    from .tasks import TaskStore
    from .workqueue import WorkQueue

logger = Logger(child=True)

# A task id becomes part of S3 keys: one safe path segment, nothing else.
VALID_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
RECORD_RESERVE_SECONDS = 15.0  # kept back from a copy's time budget to record and announce its outcome
# How far a run's clock (the event's time) may be from the wall clock. A scheduled tick starts at most
# about 4 minutes after its time: the Scheduler retries it for 120 s (RetryPolicy MaximumEventAgeInSeconds)
# and Lambda's asynchronous queue keeps it 120 s more (EventInvokeConfig). An event further off either way
# (the console's test event says 1970) is not a tick: the run uses the wall clock instead.
EVENT_TIME_TOLERANCE_SECONDS = 300


@dataclass
class RunSummary:
    """What one run did; the handler returns it and turns it into metrics."""

    run_id: str
    now: str
    due: int = 0
    discovery_items_read: int = 0
    claimed: int = 0
    claim_conflicts: int = 0
    polled: int = 0
    poll_errors: int = 0
    still_pending: int = 0
    archived: int = 0
    failed: int = 0
    expired: int = 0
    archive_errors: int = 0
    bytes_archived: int = 0
    announced: int = 0
    publish_errors: int = 0
    task_errors: int = 0
    left_for_next_run: int = 0
    dispatched: int = 0  # handed to the work queue
    oldest_claimed_age_seconds: int = 0  # since first seen, over the tasks this run claimed
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


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str | None = None
    assets: Mapping[str, StoredAsset | None] = field(default_factory=dict)
    manifest: StoredAsset | None = None


class Poller:
    """Runs the archive cycle over every due task, in a bounded pool of threads."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        feed: FeedClient,
        media: MediaArchiver,
        publisher: EventPublisher,
        *,
        work_queue: WorkQueue | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.work_queue = work_queue
        self.store = store
        self.feed = feed
        self.media = media
        self.publisher = publisher
        self.wall_clock = wall_clock
        # Copies hold memory (multipart buffers); polls hardly any. Bound copies separately.
        self.copy_slots = threading.BoundedSemaphore(settings.archive_concurrency)

    def run(self, now: datetime, remaining_seconds: Callable[[], float]) -> RunSummary:
        """The scheduled run: announce leftovers, then work on (or hand out) every due task."""
        run = Run(self, now, remaining_seconds)
        run.announce_leftovers()
        run.poll_due_tasks()
        return run.summary

    def start(self, now: datetime | None, remaining_seconds: Callable[[], float]) -> Run:
        """A run that a worker feeds with work requests (`Run.process_request`); `None`: the wall clock."""
        return Run(self, now, remaining_seconds)


class Run:
    """The state of one run: its id, its clock, its summary and whether it should stop."""

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
        self.now_iso = now.isoformat().replace("+00:00", "Z")
        self.remaining_seconds = remaining_seconds
        self.run_id = str(uuid.uuid4())
        self.summary = RunSummary(run_id=self.run_id, now=self.now_iso)
        self.stop_reason: str | None = None
        if ignored and event_time is not None:
            self.summary.ignored_event_time = event_time.isoformat().replace("+00:00", "Z")
            logger.warning(
                "the event's time is too far from the wall clock for a scheduled tick: this run uses the wall clock",
                extra={
                    "event_time": self.summary.ignored_event_time,
                    "wall_clock": self.now_iso,
                    "tolerance_seconds": EVENT_TIME_TOLERANCE_SECONDS,
                },
            )

    # -- the two phases -------------------------------------------------------------------
    def announce_leftovers(self) -> None:
        """Publish outcomes that an earlier run recorded but could not announce."""
        leftovers = self.p.store.unannounced(self.wall_now())
        for task_id in leftovers.task_ids:
            if self.should_stop():
                break
            claim = self.p.store.claim_announcement(task_id, self.run_id, self.wall_now(), self.settings.lease_seconds)
            if claim is None:
                self.summary.add(claim_conflicts=1)
                continue
            with _task_context(task_id):
                self.announce(claim, str(claim.item["event"]))

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
            batches = [handed_out[i : i + 10] for i in range(0, len(handed_out), 10)]
            # list() re-raises nothing: dispatch() and process() keep every error inside.
            list(pool.map(self.dispatch, batches))
            list(pool.map(self.process, own))
        if self.stop_reason:
            logger.warning(
                "run stopped early",
                extra={"reason": self.stop_reason, "left_for_next_run": self.summary.left_for_next_run},
            )

    # -- scale-out ------------------------------------------------------------------------
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

    def process_request(self, request: WorkRequest) -> bool:
        """A worker's task. False when nothing was attempted and the message should come back."""
        return self.process(request.task_id, token=request.token, from_queue=True)

    # -- one task -------------------------------------------------------------------------
    def process(self, task_id: str, *, token: str | None = None, from_queue: bool = False) -> bool:
        """Claim one task and work on it; every error stays inside. False when nothing was attempted."""
        if self.should_stop():
            self.summary.add(left_for_next_run=1)
            return False
        with _task_context(task_id):
            try:
                claim = self.claim(task_id, token=token, from_queue=from_queue)
            except (ClientError, BotoCoreError) as exc:
                self.summary.add(task_errors=1)
                logger.error("claiming the task failed; it is tried again", extra={"error": type(exc).__name__})
                return False
            except Exception:
                self.summary.add(task_errors=1)
                logger.exception("unexpected error while claiming; the task is tried again")
                return False
            if claim is None:
                self.summary.add(claim_conflicts=1)
                logger.info("task held by another run or no longer due")
                return True
            try:
                self.summary.add(claimed=1)
                self.summary.saw_age(self.now_epoch - claim.first_seen_at)
                self.work_on(claim)
            except LeaseLost:
                self.summary.add(claim_conflicts=1)
                logger.warning("claim taken over by another run; this run's work on the task is dropped")
            except (ClientError, BotoCoreError) as exc:
                # The claim stays until its lease runs out; the task is then due again.
                self.summary.add(task_errors=1)
                logger.error(
                    "AWS call failed; the task will be retried after its lease", extra={"error": type(exc).__name__}
                )
            except Exception:
                self.summary.add(task_errors=1)
                logger.exception("unexpected error; the task will be retried after its lease")
            return True

    def claim(self, task_id: str, *, token: str | None, from_queue: bool) -> Claim | None:
        lease = self.settings.lease_seconds
        if from_queue:
            return self.p.store.take_over(task_id, self.run_id, self.now_epoch, self.wall_now(), lease, token=token)
        return self.p.store.claim_pending(task_id, self.run_id, self.now_epoch, self.wall_now(), lease)

    def work_on(self, claim: Claim) -> None:
        if not VALID_TASK_ID.fullmatch(claim.task_id):
            reason = "task_id is not a valid identifier (letters, digits, '_', '.', ':', '-'; at most 200)"
            self.finish(claim, None, Outcome(FAILED, reason))
            return
        try:
            answer = self.p.feed.fetch(claim.task_id)
        except FeedError as exc:
            self.summary.add(poll_errors=1)
            logger.warning(
                "poll failed",
                extra={
                    "reason": exc.reason,
                    "kind": exc.kind.value,
                    "http_status": exc.http_status,
                    "request_id": exc.request_id,
                },
            )
            if exc.kind.is_configuration_error:
                self.stop_reason = self.summary.configuration_error = exc.reason
            self.setback(claim, None, exc.reason, self.persistence_of(exc, claim))
            return
        self.summary.add(polled=1)
        if answer.note:
            logger.warning("feed answer read with care", extra={"note": answer.note, "dialect": answer.dialect.value})
        if answer.progress is Progress.FAILED:
            self.finish(claim, answer, Outcome(FAILED, answer.failure))
        elif answer.progress is Progress.SUCCEEDED:
            self.archive(claim, answer)
        else:
            self.keep_pending(claim, answer)

    def persistence_of(self, error: FeedError, claim: Claim) -> Persistence:
        """`task_not_exist` is what a task created moments ago may answer: wait it out while the task is new."""
        if error.kind is FeedErrorKind.TASK_NOT_FOUND and (
            self.now_epoch - claim.first_seen_at < self.settings.new_task_grace_seconds
        ):
            return Persistence.TRANSIENT
        return error.kind.persistence

    def archive(self, claim: Claim, answer: FeedAnswer) -> None:
        urls = media_urls(answer)
        assets: dict[str, StoredAsset | None] = {}
        with self.p.copy_slots:
            # The copy must end in time for its outcome to be recorded before the invocation does.
            budget = min(self.settings.media_copy_timeout_seconds, self.remaining_seconds() - RECORD_RESERVE_SECONDS)
            deadline = time.monotonic() + max(0.0, budget)
            for role in urls:
                url = urls[role]
                if url is None:
                    assets[role] = None  # absent in the answer: recorded as absent, not an error
                    continue
                try:
                    assets[role] = self.p.media.copy(claim.task_id, role, url, deadline=deadline)
                except (MediaError, AddressRefused) as exc:  # a refused address is a failed copy
                    self.summary.add(archive_errors=1)
                    logger.warning(
                        "media copy failed",
                        extra={"role": role, "reason": exc.reason, "persistence": exc.persistence.value},
                    )
                    self.setback(claim, answer, f"{role}: {exc.reason}", exc.persistence)
                    return
        copied = sum(asset.size for asset in assets.values() if asset)
        self.summary.add(bytes_archived=copied)
        try:
            # After the media (it lists them), before the item (which names it): a manifest is
            # never left naming files that are not there, and an archived item always has one.
            manifest = self.p.media.put_manifest(claim.task_id, self.manifest(claim, answer, assets))
        except MediaError as exc:
            self.summary.add(archive_errors=1)
            logger.warning("writing the manifest failed", extra={"reason": exc.reason})
            self.setback(claim, answer, f"manifest: {exc.reason}", exc.persistence)
            return
        self.finish(claim, answer, Outcome(ARCHIVED, assets=assets, manifest=manifest))

    def manifest(self, claim: Claim, answer: FeedAnswer, assets: Mapping[str, StoredAsset | None]) -> dict[str, Any]:
        """What the archive knows of the task, kept beside its files (README, "The manifest")."""
        return {
            "manifest_version": 1,
            "task_id": claim.task_id,
            "status": ARCHIVED,
            "provider_name": self.p.feed.provider.value,
            "dialect": answer.dialect.value,
            "prompt": _text(answer.facts, "prompt"),
            "prompt_en": _text(answer.facts, "prompt_en"),
            "provider_answer": from_dynamo(dict(answer.data)),
            "assets": events.asset_map({role: asset.as_dict() if asset else None for role, asset in assets.items()}),
            "archived_at": self.now_iso,
            "event_id": events.event_id(claim.task_id, ARCHIVED),
            "event_type": events.EVENT_TYPES[ARCHIVED],
            "event_source": self.settings.event_source,
        }

    def setback(self, claim: Claim, answer: FeedAnswer | None, reason: str, persistence: Persistence) -> None:
        """A poll or copy that failed: fail the task, or keep it pending, as the error deserves."""
        if persistence is Persistence.PERMANENT:
            self.finish(claim, answer, Outcome(FAILED, reason))
            return
        failing_since = None
        if persistence is Persistence.PERSISTENT:
            failing_since = int(claim.item.get("failing_since", self.now_epoch))
            grace = self.settings.persistent_error_grace_seconds
            if self.now_epoch - failing_since >= grace:
                self.finish(claim, answer, Outcome(FAILED, f"{reason} (for over {grace // 60} min)"))
                return
        elif "failing_since" in claim.item:
            failing_since = int(claim.item["failing_since"])  # a transient error neither starts nor ends it
        self.keep_pending(claim, answer, error=reason, failing_since=failing_since)

    def keep_pending(
        self, claim: Claim, answer: FeedAnswer | None, *, error: str | None = None, failing_since: int | None = None
    ) -> None:
        waited = self.now_epoch - claim.first_seen_at
        if waited >= self.settings.expire_after_seconds:
            last = error or (f"last provider status {answer.provider_status!r}" if answer else "never answered")
            hours = self.settings.expire_after_seconds / 3600
            self.finish(claim, answer, Outcome(EXPIRED, f"no terminal answer within {hours:g} h ({last})"))
            return
        polls = claim.poll_count + 1
        delay = poll_delay(polls, self.settings)
        fields: dict[str, Any] = {"last_polled_at": self.now_iso, **_provider_fields(answer)}
        if error:
            fields["last_error"] = error
        if failing_since is not None:
            fields["failing_since"] = failing_since
        self.p.store.reschedule(claim, self.now_epoch + delay, fields, clear_failing=failing_since is None)
        self.summary.add(still_pending=1)
        logger.info(
            "still pending",
            extra={
                "next_poll_in_seconds": delay,
                "polls": polls,
                "progress": answer.progress.value if answer else None,
            },
        )

    def finish(self, claim: Claim, answer: FeedAnswer | None, outcome: Outcome) -> None:
        """Record the terminal outcome with its event, then announce it."""
        assets = events.asset_map({role: asset.as_dict() if asset else None for role, asset in outcome.assets.items()})
        provider = from_dynamo(dict(answer.data)) if answer else _stored_provider(claim)
        dialect = answer.dialect.value if answer else _stored_text(claim, "dialect")
        facts = answer.facts if answer else claim.item
        manifest = _manifest_reference(outcome.manifest)
        event = events.encode(
            events.build_event(
                source=self.settings.event_source,
                task_id=claim.task_id,
                status=outcome.status,
                time=self.now_iso,
                assets=assets,
                prompt=_text(facts, "prompt"),
                prompt_en=_text(facts, "prompt_en"),
                error=outcome.error,
                provider=provider,
                provider_name=self.p.feed.provider.value,
                dialect=dialect,
                manifest=manifest,
            )
        )
        fields: dict[str, Any] = {"last_polled_at": self.now_iso, **_provider_fields(answer), "error": outcome.error}
        if outcome.status == ARCHIVED:
            fields["assets"] = assets
        if manifest is not None:
            fields["manifest"] = manifest
        self.p.store.record_outcome(claim, outcome.status, fields, event, completed_at=self.now_iso)
        self.summary.add(**{outcome.status.lower(): 1})
        log = logger.warning if outcome.error else logger.info
        log("task ended", extra={"status": outcome.status, "error": outcome.error})
        self.announce(claim, event)

    def announce(self, claim: Claim, event: str) -> None:
        """Publish a recorded outcome; on failure leave it in the outbox for the next run."""
        try:
            self.p.publisher.publish(event)
        except (ClientError, BotoCoreError) as exc:
            self.summary.add(publish_errors=1)
            logger.error("publish failed; the next run publishes it", extra={"error": type(exc).__name__})
            self.p.store.release(claim)
            return
        self.summary.add(announced=1)
        self.p.store.mark_announced(claim, self.iso_wall_now())

    # -- time -----------------------------------------------------------------------------
    def should_stop(self) -> bool:
        if self.stop_reason is None and self.remaining_seconds() < self.settings.claim_cutoff_seconds:
            self.stop_reason = "the remaining Lambda time is low"
        return self.stop_reason is not None

    def wall_now(self) -> int:
        # Leases are about real concurrency, so they run on the wall clock, not the event's time.
        return int(self.p.wall_clock())

    def iso_wall_now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.p.wall_clock()))


def media_urls(answer: FeedAnswer) -> dict[str, str | None]:
    """Each asset role and its URL, in copy order: small files first (a broken poster costs no video
    copy), then the video, then further outputs as `video_2`, `video_3`..."""
    urls: dict[str, str | None] = {"poster": answer.poster_url, "last_frame": answer.last_frame_url}
    urls["video"] = answer.video_url
    for number, url in enumerate(answer.video_urls[1:], start=2):
        urls[f"video_{number}"] = url
    return urls


def poll_delay(polls_done: int, settings: Settings) -> int:
    """Every run for the first `fast_polls` polls, then doubling up to the maximum interval."""
    doublings = min(max(0, polls_done - settings.fast_polls), 20)
    return int(min(settings.max_poll_interval_seconds, settings.min_poll_interval_seconds * 2**doublings))


@contextmanager
def _task_context(task_id: str) -> Iterator[None]:
    """Every log line inside carries the task id, in this thread only."""
    logger.thread_safe_append_keys(task_id=task_id)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(["task_id"])


def _provider_fields(answer: FeedAnswer | None) -> dict[str, Any]:
    if answer is None:
        return {}
    fields: dict[str, Any] = {
        "provider": dict(answer.data),
        "provider_name": answer.provider.value,
        "dialect": answer.dialect.value,
        "provider_status": answer.provider_status,
        "provider_state": answer.data.get("state"),
    }
    optional = {
        "provider_progress": answer.provider_progress,
        "upstream_status": answer.upstream_status,
        "failure_code": answer.failure_code,
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    for name in ("prompt", "prompt_en", "point", "refund"):
        if answer.facts.get(name) is not None:
            fields[name] = answer.facts[name]
    for name in ("create_time", "update_time"):
        if answer.facts.get(name) is not None:
            fields[f"provider_{name}"] = answer.facts[name]
    return fields


def _manifest_reference(manifest: StoredAsset | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    return {
        "bucket": manifest.bucket,
        "key": manifest.key,
        "version_id": manifest.version_id,
        "size": manifest.size,
        "sha256": manifest.sha256,
        "checksum_sha256": manifest.checksum_sha256,
    }


def _stored_provider(claim: Claim) -> dict[str, Any] | None:
    stored = claim.item.get("provider")
    return from_dynamo(stored) if isinstance(stored, dict) else None


def _stored_text(claim: Claim, name: str) -> str | None:
    value = claim.item.get(name)
    return value if isinstance(value, str) else None


def _text(data: Mapping[str, Any] | None, name: str) -> str | None:
    value = data.get(name) if data else None
    return value if isinstance(value, str) else None
