"""One task's way through a run: claim -> poll -> archive -> record -> announce.

`TaskLifecycle` is what the scheduled run does with each task it keeps and what the worker does
with each work request; neither decides here whether there is time to start a task (that is
`run.Run`'s time budget). Every error stays inside: a task ends recorded, kept pending with a
later poll time, or left claimed until its lease runs out.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from . import events
from .clock import iso_utc
from .errors import MediaError, Persistence
from .feed import (
    DEFAULT_FAMILY,
    FeedAnswer,
    FeedError,
    FeedErrorKind,
    Progress,
    families,
    family_named,
    known_families,
)
from .observability import logger
from .tasks import ARCHIVED, EXPIRED, FAILED, FORGOTTEN, Claim, LeaseLost, from_dynamo, storable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from datetime import datetime

    from .config import Settings
    from .media import StoredAsset
    from .poller import Poller
    from .summary import RunSummary


# A task id becomes part of S3 keys: one safe path segment, nothing else.
VALID_TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}")
RECORD_RESERVE_SECONDS = 15.0  # kept back from a copy's time budget to record and announce its outcome


@dataclass(frozen=True)
class Outcome:
    status: str
    error: str | None = None
    assets: Mapping[str, StoredAsset | None] = field(default_factory=dict)
    manifest: StoredAsset | None = None


class TaskLifecycle:
    """Claims, polls, archives, records and announces tasks for one run, counting in its summary.

    `now` is the run's clock (expiry, back-off, first-seen times); leases run on the poller's
    wall clock. A configuration error met on a poll is written to `summary.configuration_error`,
    which stops the run (`Run.should_stop`).
    """

    def __init__(
        self,
        poller: Poller,
        *,
        run_id: str,
        now: datetime,
        summary: RunSummary,
        remaining_seconds: Callable[[], float],
    ) -> None:
        self.p = poller
        self.settings = poller.settings
        self.run_id = run_id
        self.now_epoch = int(now.timestamp())
        self.now_iso = iso_utc(now, timespec="auto")
        self.summary = summary
        self.remaining_seconds = remaining_seconds

    # -- the entries ----------------------------------------------------------------------
    def process(self, task_id: str, *, token: str | None = None, from_queue: bool = False) -> bool:
        """Claim one task and work on it; every error stays inside. False when nothing was attempted."""
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

    def announce_leftover(self, task_id: str) -> None:
        """Publish an outcome that an earlier run recorded but could not announce."""
        claim = self.p.store.claim_announcement(task_id, self.run_id, self.wall_now(), self.settings.lease_seconds)
        if claim is None:
            self.summary.add(claim_conflicts=1)
            return
        with _task_context(task_id):
            self.announce(claim, str(claim.item["event"]))

    # -- claim and poll -------------------------------------------------------------------
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
        family = family_named(_stored_text(claim, "model_family"))
        if family is None:
            self.finish(claim, None, Outcome(FAILED, self.unserved(claim)))  # no call: nobody here can ask
            return
        try:
            # A family whose API this stack holds no key for (the gateway's, with Provider=runway and
            # none put): FAILED, with no call to anyone. A key that cannot be read stops the run instead.
            refusal = self.p.feed.unserved(family)
            if refusal is not None:
                self.finish(claim, None, Outcome(FAILED, refusal))
                return
            if archive_folder(family.name) is None and claim.task_id in families():
                # Its files would sit at {prefix}/{task_id}/, the folder of that family's whole archive.
                reason = (
                    f"task_id {claim.task_id!r} names the archive folder of a model family; it cannot be a Runway task"
                )
                self.finish(claim, None, Outcome(FAILED, reason))
                return
            answer = self.p.feed.fetch(claim.task_id, family)
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
                self.summary.configuration_error = exc.reason  # stops the run
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

    def unserved(self, claim: Claim) -> str:
        name = _stored_text(claim, "model_family")
        return f"provider {name!r} is not one this archiver knows ({known_families()})"

    def provider_name(self, claim: Claim) -> str:
        """Whose API answered, as the event's `provider_name` says: for Runway's tasks the stack's
        provider (cometapi | runway, as always), for another family's its name."""
        family = _stored_text(claim, "model_family") or DEFAULT_FAMILY
        return self.p.feed.provider.value if family == DEFAULT_FAMILY else family

    def persistence_of(self, error: FeedError, claim: Claim) -> Persistence:
        """`task_not_exist` is what a task created moments ago may answer: wait it out while the task is new."""
        if error.kind is FeedErrorKind.TASK_NOT_FOUND and (
            self.now_epoch - claim.first_seen_at < self.settings.new_task_grace_seconds
        ):
            return Persistence.TRANSIENT
        return error.kind.persistence

    # -- archive --------------------------------------------------------------------------
    def archive(self, claim: Claim, answer: FeedAnswer) -> None:
        urls = media_urls(answer)
        family = family_named(answer.family)
        auth = self.p.feed.media_auth(family) if family else None
        folder = archive_folder(answer.family)
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
                    assets[role] = self.p.media.copy(
                        claim.task_id, role, url, deadline=deadline, auth=auth, folder=folder
                    )
                except MediaError as exc:  # a refused address (AddressRefused) is a failed copy too
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
            manifest = self.p.media.put_manifest(claim.task_id, self.manifest(claim, answer, assets), folder)
        except MediaError as exc:
            self.summary.add(archive_errors=1)
            logger.warning("writing the manifest failed", extra={"reason": exc.reason})
            self.setback(claim, answer, f"manifest: {exc.reason}", exc.persistence)
            return
        self.finish(claim, answer, Outcome(ARCHIVED, assets=assets, manifest=manifest))

    def manifest(self, claim: Claim, answer: FeedAnswer, assets: Mapping[str, StoredAsset | None]) -> dict[str, Any]:
        """What the archive knows of the task, kept beside its files (docs/contract.md, "The archive on S3")."""
        return {
            "manifest_version": 1,
            "task_id": claim.task_id,
            "status": ARCHIVED,
            "provider_name": self.provider_name(claim),
            "model_family": answer.family,
            "dialect": answer.dialect.value,
            "prompt": _text(answer.facts, "prompt"),
            "prompt_en": _text(answer.facts, "prompt_en"),
            "provider_answer": storable(from_dynamo(dict(answer.data))),  # strict JSON: no bare NaN
            "assets": events.asset_map({role: asset.as_dict() if asset else None for role, asset in assets.items()}),
            "archived_at": self.now_iso,
            "event_id": events.event_id(claim.task_id, ARCHIVED),
            "event_type": events.EVENT_TYPES[ARCHIVED],
            "event_source": self.settings.event_source,
        }

    # -- not this time --------------------------------------------------------------------
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
        """Poll again later (`poll_delay`), unless the task has waited too long: then it expires."""
        waited = self.now_epoch - claim.first_seen_at
        if waited >= self.settings.expire_after_seconds:
            last = error or (f"last provider status {answer.provider_status!r}" if answer else "never answered")
            hours = self.settings.expire_after_seconds / 3600
            self.finish(claim, answer, Outcome(EXPIRED, f"no terminal answer within {hours:g} h ({last})"))
            return
        polls = claim.poll_count + 1
        delay = poll_delay(polls, self.settings)
        fields: dict[str, Any] = {"last_polled_at": self.now_iso, **self.provider_fields(claim, answer)}
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

    # -- record and announce --------------------------------------------------------------
    def finish(self, claim: Claim, answer: FeedAnswer | None, outcome: Outcome) -> None:
        """Record the terminal outcome with its event, then announce it."""
        assets = events.asset_map({role: asset.as_dict() if asset else None for role, asset in outcome.assets.items()})
        provider = storable(from_dynamo(dict(answer.data))) if answer else _stored_provider(claim)
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
                provider_name=self.provider_name(claim),
                model_family=_stored_text(claim, "model_family") or DEFAULT_FAMILY,
                dialect=dialect,
                manifest=manifest,
            )
        )
        fields: dict[str, Any] = {
            "last_polled_at": self.now_iso,
            **self.provider_fields(claim, answer),
            "error": outcome.error,
        }
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
        if claim.item.get("status") == FORGOTTEN:
            self.p.store.tombstone_announced(claim, self.iso_wall_now())
            return
        self.p.store.mark_announced(claim, self.iso_wall_now())

    def provider_fields(self, claim: Claim, answer: FeedAnswer | None) -> dict[str, Any]:
        fields = _provider_fields(answer)
        if answer is not None:
            fields["provider_name"] = self.provider_name(claim)
        return fields

    # -- the wall clock -------------------------------------------------------------------
    def wall_now(self) -> int:
        # Leases are about real concurrency, so they run on the wall clock, not the run's time.
        return int(self.p.wall_clock())

    def iso_wall_now(self) -> str:
        return iso_utc(self.p.wall_clock())


def media_urls(answer: FeedAnswer) -> dict[str, str | None]:
    """Each asset role and its URL, in copy order: small files first (a broken poster costs no video
    copy), then the video, then further outputs as `video_2`, `video_3`..."""
    urls: dict[str, str | None] = {"poster": answer.poster_url, "last_frame": answer.last_frame_url}
    urls["video"] = answer.video_url
    for number, url in enumerate(answer.video_urls[1:], start=2):
        urls[f"video_{number}"] = url
    return urls


def archive_folder(family: str) -> str | None:
    """Where a family's files go under the key prefix: Runway's at `{prefix}/{task_id}/` (the contract
    since the first version), every other family's at `{prefix}/{family}/{task_id}/`."""
    return None if family == DEFAULT_FAMILY else family


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
