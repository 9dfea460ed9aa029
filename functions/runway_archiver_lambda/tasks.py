"""The tasks table: discovery by index, claims by conditional write, the item as outbox.

Item shape (the public contract is `task_id` (S, partition key) and `status`; the rest is ours):

    status           PENDING | ARCHIVED | FAILED | EXPIRED | FORGOTTEN (a tombstone: `runway-archiver forget`)
    first_seen_at    epoch seconds when the archiver first claimed the task (expiry counts from it)
    next_poll_at     epoch seconds before which the task is not due
    poll_count       polls so far
    lease_owner      run id holding the claim; lease_until: epoch seconds (wall clock) it expires
    outbox           "UNANNOUNCED" while a terminal outcome waits for its SNS event (sparse index)
    event            the CloudEvent JSON published for the outcome, stored before publishing
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_dynamodb.service_resource import Table

PENDING, ARCHIVED, FAILED, EXPIRED = "PENDING", "ARCHIVED", "FAILED", "EXPIRED"
# Not an outcome of a run: the operator erased the task. The item stays, so the id is known and
# neither register() nor a callback brings the task back.
FORGOTTEN = "FORGOTTEN"
TERMINAL_STATUSES = (ARCHIVED, FAILED, EXPIRED)
STATUS_INDEX = "status-index"
OUTBOX_INDEX = "outbox-index"
UNANNOUNCED = "UNANNOUNCED"

_LEASE_FREE = "(attribute_not_exists(lease_until) OR lease_until <= :wall_now)"
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
            "(attribute_not_exists(next_poll_at) OR next_poll_at <= :now) AND " + _LEASE_FREE,
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
            "#status = :pending AND (attribute_not_exists(next_poll_at) OR next_poll_at <= :now) AND " + _LEASE_FREE,
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
            "#status = :pending AND (attribute_not_exists(next_poll_at) OR next_poll_at <= :now) AND " + _LEASE_FREE,
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
        names: Mapping[str, str] | None = None,
    ) -> Mapping[str, Any] | None:
        kwargs: dict[str, Any] = {
            "Key": {"task_id": task_id},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": dict(values),
            "ReturnValues": "ALL_NEW",
        }
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        try:
            return self._table.update_item(**kwargs).get("Attributes", {})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise

    def register(self, task_id: str) -> bool:
        """Put a new PENDING task (the contract's minimal item); False if the id is already known,
        a forgotten task's tombstone included."""
        try:
            self._table.put_item(
                Item={"task_id": task_id, "status": PENDING}, ConditionExpression="attribute_not_exists(task_id)"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, task_id: str) -> Mapping[str, Any] | None:
        return self._table.get_item(Key={"task_id": task_id}, ConsistentRead=True).get("Item")


def _claim(task_id: str, run_id: str, attributes: Mapping[str, Any]) -> Claim:
    return Claim(
        task_id=task_id,
        run_id=run_id,
        first_seen_at=int(attributes.get("first_seen_at", 0)),
        poll_count=int(attributes.get("poll_count", 0)),
        item=attributes,
    )


def to_dynamo(value: Any) -> Any:
    """Python/JSON values as DynamoDB accepts them: floats become Decimals."""
    return json.loads(json.dumps(value), parse_float=Decimal)


def from_dynamo(value: Any) -> Any:
    """DynamoDB values back to JSON-friendly Python: Decimals become int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):  # a set: a DynamoDB string or number set
        return [from_dynamo(v) for v in value]
    return value
