"""The tasks table: discovery by index, claims by conditional write, the item as outbox.

`TaskStore` is the only code that writes an item (the Lambdas and the operator CLI alike). The
public contract is `task_id` (S, partition key) and `status`; every other attribute is ours, and
this is all of them (an "ISO time" is `2026-11-24T12:00:00Z`, see clock.iso_utc):

  The task and its claim
    task_id          the provider's task id (partition key)
    status           PENDING | ARCHIVED | FAILED | EXPIRED | FORGOTTEN (a tombstone: `runway-archiver forget`)
    first_seen_at    epoch seconds when the archiver first claimed the task (expiry counts from it)
    next_poll_at     epoch seconds before which the task is not due (removed once it ends)
    poll_count       polls so far
    lease_owner      who holds the claim: a run id, or "dispatch:<run id>" while a work message is in flight
    lease_until      epoch seconds (wall clock) when that claim runs out
  Each poll (reschedule, record_outcome)
    last_polled_at   ISO time of the last poll
    last_error       why the last poll or copy failed (stays until retry removes it)
    failing_since    epoch seconds since when a persistent error has lasted (its grace period counts from it)
    provider         the provider's answer as received (a map)
    provider_name    whose API answered: cometapi | runway for Runway's tasks, the family's name
                     (kling, sora...) for another family's; a tombstone keeps it
    model_family     the model family the task belongs to (runway, kling, sora...: feed/families/),
                     set at registration; absent means runway, as for every item made before families
    dialect          the shape the answer came in (feed.Dialect)
    provider_status, provider_state, provider_progress, upstream_status, failure_code
                     the provider's own words for the task's state, progress and failure
    prompt, prompt_en, point, refund, provider_create_time, provider_update_time
                     facts of the answer, when it carries them
  The outcome (record_outcome) and its announcement (mark_announced)
    error            why the task FAILED or EXPIRED (None when ARCHIVED)
    assets           video, poster, last_frame (always) and video_2, video_3... (further outputs) -> None or
                     {bucket, key, version_id, size, sha256, checksum_sha256, content_type}
    manifest         {bucket, key, version_id, size, sha256, checksum_sha256} of the manifest beside the files
    completed_at     ISO time of the outcome (the outbox index's sort key)
    event            the CloudEvent JSON published for the outcome, stored before publishing
    outbox           "UNANNOUNCED" while the outcome waits for its SNS event (sparse index)
    announced_at     ISO time the event was published
  The operator (retry, replay, tombstone ...)
    retried_at       ISO time of the last `runway-archiver retry` (which removes RETRY_REMOVES)
    forgotten_at     ISO time of `runway-archiver forget`; a tombstone keeps only TOMBSTONE_KEEPS,
                     forgotten_at, and its FORGOTTEN event's event/completed_at/outbox/announced_at
                     (and, until its erasure is done, ERASURE_NEEDS: where its objects were)
    allow_again      true on a tombstone `forget --allow-again` asked to delete once its event is out
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from .errors import is_conditional_check_failed

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mypy_boto3_dynamodb.service_resource import Table

PENDING, ARCHIVED, FAILED, EXPIRED = "PENDING", "ARCHIVED", "FAILED", "EXPIRED"
# Not an outcome of a run: the operator erased the task. The item stays, so the id is known and
# neither register() nor a callback brings the task back.
FORGOTTEN = "FORGOTTEN"
TERMINAL_STATUSES = (ARCHIVED, FAILED, EXPIRED)
STATUS_INDEX = "status-index"
OUTBOX_INDEX = "outbox-index"
UNANNOUNCED = "UNANNOUNCED"
# The archiver's bookkeeping, dropped when `retry` puts a task back to PENDING: it starts afresh.
RETRY_REMOVES = (
    "error",
    "first_seen_at",
    "next_poll_at",
    "poll_count",
    "last_polled_at",
    "last_error",
    "failing_since",
    "completed_at",
    "announced_at",
    "event",
    "outbox",
    "lease_owner",
    "lease_until",
    "assets",
    "provider_status",
    "provider_state",
    "upstream_status",
    "provider_progress",
    "failure_code",
)
# What a tombstone keeps of the item (forgotten_at and its own event are added).
TOMBSTONE_KEEPS = ("task_id", "provider_name", "status", "model_family")
# Where the task's objects were: kept on the tombstone until the erasure is done (its event queued),
# so `forget` run again after being cut short still knows what to erase and what to announce.
ERASURE_NEEDS = ("assets", "manifest")
# Every other attribute the archiver or the operator writes (this docstring's list): the tombstone
# removes all of them, besides those it read on the item, so nothing a run wrote after that read
# (a prompt, the provider's answer) survives it.
TOMBSTONE_REMOVES = (
    *RETRY_REMOVES,
    "provider",
    "dialect",
    "prompt",
    "prompt_en",
    "point",
    "refund",
    "provider_create_time",
    "provider_update_time",
    "retried_at",
    "allow_again",
)

_LEASE_FREE = "(attribute_not_exists(lease_until) OR lease_until <= :wall_now)"
_DUE_AND_LEASE_FREE = "(attribute_not_exists(next_poll_at) OR next_poll_at <= :now) AND " + _LEASE_FREE
# Spelt out, not nested: DynamoDB refuses redundant parentheses in a condition.
_LEASE_FREE_OR_DISPATCHED_TO_US = (
    "(lease_owner = :token OR attribute_not_exists(lease_until) OR lease_until <= :wall_now)"
)


class LeaseLost(Exception):
    """Another run took the task over (our lease ran out): drop the work, change nothing."""


@dataclass(frozen=True)
class Claim:
    """A task this run holds, as the item stood when it was claimed."""

    task_id: str
    run_id: str
    first_seen_at: int
    poll_count: int
    item: Mapping[str, Any]


@dataclass(frozen=True)
class Discovery:
    task_ids: list[str]
    items_read: int


class TaskStore:
    """All reads and writes of the tasks table."""

    def __init__(self, table: Table) -> None:
        self._table = table

    # -- discovery ------------------------------------------------------------------------
    def due_pending(self, now: int, wall_now: int) -> Discovery:
        """PENDING tasks due for a poll and not held by a live claim: a Query, never a Scan."""
        return self._query_index(
            STATUS_INDEX,
            "#status = :pending",
            {":pending": PENDING, ":now": now, ":wall_now": wall_now},
            _DUE_AND_LEASE_FREE,
            {"#status": "status"},
        )

    def unannounced(self, wall_now: int) -> Discovery:
        """Terminal outcomes whose event is not yet published and that no live run holds."""
        return self._query_index(
            OUTBOX_INDEX,
            "#outbox = :unannounced",
            {":unannounced": UNANNOUNCED, ":wall_now": wall_now},
            _LEASE_FREE,
            {"#outbox": "outbox"},
        )

    def _query_index(
        self, index: str, key_condition: str, values: dict[str, Any], filter_expression: str, names: dict[str, str]
    ) -> Discovery:
        task_ids: list[str] = []
        items_read = 0
        kwargs: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": key_condition,
            "FilterExpression": filter_expression,
            "ExpressionAttributeNames": {**names, "#task_id": "task_id"},
            "ExpressionAttributeValues": values,
            "ProjectionExpression": "#task_id",
        }
        while True:
            page = self._table.query(**kwargs)
            items_read += int(page.get("ScannedCount", 0))
            task_ids.extend(str(item["task_id"]) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return Discovery(task_ids, items_read)
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- claims ---------------------------------------------------------------------------
    def claim_pending(self, task_id: str, run_id: str, now: int, wall_now: int, lease_seconds: int) -> Claim | None:
        """Take a due PENDING task for this run; None when another run has it or it is not due."""
        attributes = self._conditional_update(
            task_id,
            "SET lease_owner = :run, lease_until = :lease_until, first_seen_at = if_not_exists(first_seen_at, :now)",
            "#status = :pending AND " + _DUE_AND_LEASE_FREE,
            {
                ":run": run_id,
                ":lease_until": wall_now + lease_seconds,
                ":now": now,
                ":pending": PENDING,
                ":wall_now": wall_now,
            },
            names={"#status": "status"},
        )
        return None if attributes is None else _claim(task_id, run_id, attributes)

    def dispatch(self, task_id: str, token: str, now: int, wall_now: int, lease_seconds: int) -> bool:
        """Hold a due task for the work queue: a claim in the queue's name until a worker takes it over.

        If the message never reaches a worker, the lease runs out and the task is due again.
        """
        attributes = self._conditional_update(
            task_id,
            "SET lease_owner = :token, lease_until = :lease_until",
            "#status = :pending AND " + _DUE_AND_LEASE_FREE,
            {
                ":token": token,
                ":lease_until": wall_now + lease_seconds,
                ":now": now,
                ":pending": PENDING,
                ":wall_now": wall_now,
            },
            names={"#status": "status"},
        )
        return attributes is not None

    def undo_dispatch(self, task_id: str, token: str) -> None:
        """The message could not be sent: let the task be due again at once."""
        self._conditional_update(
            task_id, "REMOVE lease_owner, lease_until", "lease_owner = :token", {":token": token}, names=None
        )

    def take_over(
        self, task_id: str, run_id: str, now: int, wall_now: int, lease_seconds: int, *, token: str | None
    ) -> Claim | None:
        """A worker claims a PENDING task: the one dispatched to it under `token`, or (a hint, no token)
        any PENDING task that no live run holds, due or not. None when someone else has it."""
        lease_test = _LEASE_FREE_OR_DISPATCHED_TO_US if token else _LEASE_FREE
        values: dict[str, Any] = {
            ":run": run_id,
            ":lease_until": wall_now + lease_seconds,
            ":now": now,
            ":pending": PENDING,
            ":wall_now": wall_now,
        }
        if token:
            values[":token"] = token
        attributes = self._conditional_update(
            task_id,
            "SET lease_owner = :run, lease_until = :lease_until, first_seen_at = if_not_exists(first_seen_at, :now)",
            "#status = :pending AND " + lease_test,
            values,
            names={"#status": "status"},
        )
        return None if attributes is None else _claim(task_id, run_id, attributes)

    def claim_announcement(self, task_id: str, run_id: str, wall_now: int, lease_seconds: int) -> Claim | None:
        attributes = self._conditional_update(
            task_id,
            "SET lease_owner = :run, lease_until = :lease_until",
            "attribute_exists(outbox) AND " + _LEASE_FREE,
            {":run": run_id, ":lease_until": wall_now + lease_seconds, ":wall_now": wall_now},
        )
        return None if attributes is None else _claim(task_id, run_id, attributes)

    # -- outcomes -------------------------------------------------------------------------
    def reschedule(
        self, claim: Claim, next_poll_at: int, fields: Mapping[str, Any], *, clear_failing: bool = False
    ) -> None:
        """Still PENDING: record what was learnt, set the next poll, let go of the claim."""
        sets = {"next_poll_at": next_poll_at, "poll_count": claim.poll_count + 1, **fields}
        remove = ("lease_owner", "lease_until") + (("failing_since",) if clear_failing else ())
        self._owned_update(claim, sets, remove=remove)

    def record_outcome(
        self, claim: Claim, status: str, fields: Mapping[str, Any], event: str, completed_at: str
    ) -> None:
        """The terminal write: status, outcome fields and the event to publish, atomically.

        The claim is kept until the event is published, so no other run announces it meanwhile.
        """
        sets = {
            "status": status,
            "poll_count": claim.poll_count + 1,
            "outbox": UNANNOUNCED,
            "event": event,
            "completed_at": completed_at,
            **fields,
        }
        self._owned_update(
            claim,
            sets,
            remove=("next_poll_at",),
            extra_condition="#status = :pending",
            extra_values={":pending": PENDING},
        )

    def mark_announced(self, claim: Claim, announced_at: str) -> None:
        self._owned_update(claim, {"announced_at": announced_at}, remove=("outbox", "lease_owner", "lease_until"))

    def release(self, claim: Claim) -> None:
        """Give the claim back without other changes (e.g. a publish that failed)."""
        self._owned_update(claim, {}, remove=("lease_owner", "lease_until"))

    def _owned_update(
        self,
        claim: Claim,
        sets: Mapping[str, Any],
        *,
        remove: tuple[str, ...] = (),
        extra_condition: str = "",
        extra_values: Mapping[str, Any] | None = None,
    ) -> None:
        names = {f"#s{i}": name for i, name in enumerate(sets)}
        names.update({f"#r{i}": name for i, name in enumerate(remove)})
        values: dict[str, Any] = {f":s{i}": to_dynamo(value) for i, value in enumerate(sets.values())}
        values[":run"] = claim.run_id
        values.update(extra_values or {})
        clauses = []
        if sets:
            clauses.append("SET " + ", ".join(f"#s{i} = :s{i}" for i in range(len(sets))))
        if remove:
            clauses.append("REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove))))
        condition = "lease_owner = :run"
        if extra_condition:
            condition += " AND " + extra_condition
            names["#status"] = "status"
        if self._conditional_update(claim.task_id, " ".join(clauses), condition, values, names=names) is None:
            raise LeaseLost(f"task {claim.task_id}: claim of run {claim.run_id} was taken over")

    def _conditional_update(
        self,
        task_id: str,
        update: str,
        condition: str,
        values: Mapping[str, Any],
        *,
        names: Mapping[str, str] | None = None,
        returns: str = "ALL_NEW",
    ) -> Mapping[str, Any] | None:
        """The item as written ({} with returns="NONE"); None when the condition did not hold."""
        kwargs: dict[str, Any] = {
            "Key": {"task_id": task_id},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": dict(values),
            "ReturnValues": returns,
        }
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        try:
            return self._table.update_item(**kwargs).get("Attributes", {})
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                return None
            raise

    # -- registration -----------------------------------------------------------------------
    def register(self, task_id: str, model_family: str | None = None) -> bool:
        """Put a new PENDING task (the contract's minimal item, and its model family when one is named);
        False if the id is already known, a forgotten task's tombstone included."""
        item = {"task_id": task_id, "status": PENDING, **({"model_family": model_family} if model_family else {})}
        try:
            self._table.put_item(Item=item, ConditionExpression="attribute_not_exists(task_id)")
        except ClientError as exc:
            if is_conditional_check_failed(exc):
                return False
            raise
        return True

    # -- reading one item -------------------------------------------------------------------
    def get(self, task_id: str) -> Mapping[str, Any] | None:
        return self._table.get_item(Key={"task_id": task_id}, ConsistentRead=True).get("Item")

    def status_of(self, task_id: str) -> str | None:
        """The task's status alone (None: no such task)."""
        item = self._table.get_item(
            Key={"task_id": task_id}, ProjectionExpression="#s", ExpressionAttributeNames={"#s": "status"}
        ).get("Item")
        return None if item is None else str(item.get("status"))

    # -- the operator's writes --------------------------------------------------------------
    def retry(self, task_id: str, retried_at: str, wall_now: int) -> bool:
        """A FAILED or EXPIRED task back to PENDING, RETRY_REMOVES gone: the next run polls it afresh.

        False (nothing changed) when the task is not FAILED or EXPIRED, its outcome is still being
        announced, or a run holds it.
        """
        removes, names = _remove_clause(RETRY_REMOVES)
        attributes = self._conditional_update(
            task_id,
            f"SET #status = :pending, retried_at = :at{removes}",
            "#status IN (:failed, :expired) AND attribute_not_exists(outbox) AND " + _LEASE_FREE,
            {":pending": PENDING, ":failed": FAILED, ":expired": EXPIRED, ":at": retried_at, ":wall_now": wall_now},
            names={**names, "#status": "status"},
            returns="NONE",
        )
        return attributes is not None

    def replay(self, task_id: str) -> bool:
        """Put an ended task's stored event back in the outbox, as a failed publish leaves it: the
        next run publishes it again (same id, same body). False when it has no event to put back,
        or the event is there already."""
        attributes = self._conditional_update(
            task_id,
            "SET outbox = :unannounced",
            "#status IN (:archived, :failed, :expired) AND attribute_exists(#event)"
            " AND attribute_exists(completed_at) AND attribute_not_exists(outbox)",
            {":unannounced": UNANNOUNCED, **{f":{s.lower()}": s for s in TERMINAL_STATUSES}},
            names={"#status": "status", "#event": "event"},
            returns="NONE",
        )
        return attributes is not None

    def tombstone(
        self, task_id: str, attributes: Iterable[str], forgotten_at: str, wall_now: int
    ) -> Mapping[str, Any] | None:
        """Forget a task: status FORGOTTEN, and every attribute but TOMBSTONE_KEEPS and ERASURE_NEEDS
        goes: TOMBSTONE_REMOVES and `attributes` (the item's, as read: whatever else was on it).
        The tombstone as written; None when the task is gone, a run holds it, or its outcome waits
        in the outbox (it must be announced first)."""
        gone = {*TOMBSTONE_REMOVES, *attributes} - {*TOMBSTONE_KEEPS, *ERASURE_NEEDS}
        removes, names = _remove_clause(sorted(gone))
        return self._conditional_update(
            task_id,
            f"SET #status = :forgotten, forgotten_at = :at{removes}",
            "attribute_exists(task_id) AND #status <> :forgotten AND attribute_not_exists(outbox) AND " + _LEASE_FREE,
            {":forgotten": FORGOTTEN, ":at": forgotten_at, ":wall_now": wall_now},
            names={**names, "#status": "status"},
        )

    def erasure_done(self, task_id: str, event: str, completed_at: str, *, allow_again: bool) -> bool:
        """The tombstone's objects are erased: what erasure needed goes, its FORGOTTEN event goes into
        the outbox (completed_at is the outbox index's sort key: without it no run would see it), and
        with `allow_again` the run that publishes it deletes the tombstone. False when the erasure was
        already done (its event is queued or out)."""
        removes, names = _remove_clause(ERASURE_NEEDS)
        allow = ", allow_again = :true" if allow_again else ""
        written = self._conditional_update(
            task_id,
            f"SET outbox = :unannounced, #event = :event, completed_at = :at{allow}{removes}",
            "#status = :forgotten AND attribute_not_exists(#event)",
            {
                ":unannounced": UNANNOUNCED,
                ":event": event,
                ":forgotten": FORGOTTEN,
                ":at": completed_at,
                **({":true": True} if allow_again else {}),
            },
            names={**names, "#event": "event", "#status": "status"},
            returns="NONE",
        )
        return written is not None

    def allow_again(self, task_id: str, wall_now: int) -> str | None:
        """`forget --allow-again` on an erased tombstone: "deleted" at once if its event is out,
        "after announcement" if it waits in the outbox (the run that publishes it deletes it);
        None while a run holds it (publishing its event)."""
        try:
            self._table.delete_item(
                Key={"task_id": task_id},
                ConditionExpression="#status = :forgotten AND attribute_exists(#event)"
                " AND attribute_not_exists(outbox)",
                ExpressionAttributeNames={"#status": "status", "#event": "event"},
                ExpressionAttributeValues={":forgotten": FORGOTTEN},
            )
        except ClientError as exc:
            if not is_conditional_check_failed(exc):
                raise
        else:
            return "deleted"
        written = self._conditional_update(
            task_id,
            "SET allow_again = :true",
            "#status = :forgotten AND attribute_exists(outbox) AND " + _LEASE_FREE,
            {":forgotten": FORGOTTEN, ":true": True, ":wall_now": wall_now},
            names={"#status": "status"},
            returns="NONE",
        )
        return None if written is None else "after announcement"

    def tombstone_announced(self, claim: Claim, announced_at: str) -> bool:
        """A tombstone's FORGOTTEN event is out: if `forget --allow-again` asked for it the tombstone
        goes (the id may be registered again: True), else it is marked announced as any outcome."""
        try:
            self._table.delete_item(
                Key={"task_id": claim.task_id},
                ConditionExpression="lease_owner = :run AND #status = :forgotten AND allow_again = :true",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":run": claim.run_id, ":forgotten": FORGOTTEN, ":true": True},
            )
        except ClientError as exc:
            if not is_conditional_check_failed(exc):
                raise
            self.mark_announced(claim, announced_at)  # raises LeaseLost if the claim is no longer ours
            return False
        return True


def _remove_clause(attributes: Iterable[str]) -> tuple[str, dict[str, str]]:
    """` REMOVE #r0, #r1...` for these attributes (any name, reserved words too) and its names; "" for none."""
    names = {f"#r{i}": name for i, name in enumerate(attributes)}
    return (f" REMOVE {', '.join(names)}" if names else ""), names


def _claim(task_id: str, run_id: str, attributes: Mapping[str, Any]) -> Claim:
    return Claim(
        task_id=task_id,
        run_id=run_id,
        first_seen_at=int(attributes.get("first_seen_at", 0)),
        poll_count=int(attributes.get("poll_count", 0)),
        item=attributes,
    )


# What a DynamoDB number holds: at most 38 significant digits, magnitude from 1E-130 to below 1E+126.
_NUMBER_DIGITS = 38
_NUMBER_EXPONENTS = range(-130, 126)


def storable(value: Any) -> Any:
    """A third party's JSON value as both DynamoDB and strict JSON hold it.

    Python's JSON reader accepts what neither does: NaN, Infinity and -Infinity (bare words), 1e400
    (read as infinity), integers of any length. Such a number is kept as its JSON text, a string
    ("NaN", "Infinity", "-Infinity", "1e+300", the integer's digits): nothing is lost but its type,
    and the task is archived like any other (a number boto3 refuses would fail every write of it).
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return value if _fits_a_number(value) else _number_text(value)
    if isinstance(value, dict):
        return {str(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def _fits_a_number(value: int | float | Decimal) -> bool:
    number = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    if not number.is_finite():
        return False
    if number.is_zero():
        return True
    # Every digit counts, trailing zeros too: boto3 refuses to round even those away.
    return len(number.as_tuple().digits) <= _NUMBER_DIGITS and number.adjusted() in _NUMBER_EXPONENTS


def _number_text(value: int | float | Decimal) -> str:
    if isinstance(value, float):
        return json.dumps(value)  # NaN, Infinity, -Infinity, or the float's shortest text
    return str(value)


def to_dynamo(value: Any) -> Any:
    """Python/JSON values as DynamoDB accepts them: floats become Decimals, numbers it cannot hold strings."""
    return json.loads(json.dumps(storable(value), allow_nan=False), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """DynamoDB values back to JSON-friendly Python: Decimals become int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):  # a set: a DynamoDB string or number set
        return [from_dynamo(v) for v in value]
    return value
