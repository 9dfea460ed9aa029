"""What the operator CLI does to a deployed archive, as plain functions over boto3.

The stack is found by name (its CloudFormation outputs name the table, bucket, topic and
functions); every read of the table uses the key or the status index, never a Scan, except
`list` without a status, which lists everything by definition.
"""

from __future__ import annotations

import json
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.config import Config
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from runway_archiver_lambda.clock import iso_utc
from runway_archiver_lambda.tasks import (
    EXPIRED,
    FAILED,
    FORGOTTEN,
    PENDING,
    STATUS_INDEX,
    TERMINAL_STATUSES,
    TaskStore,
    from_dynamo,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    import boto3

DEFAULT_STACK = "runway-archiver"
BATCH_GET_LIMIT = 100  # keys per BatchGetItem request, DynamoDB's maximum
STATUSES = (PENDING, *TERMINAL_STATUSES, FORGOTTEN)  # FORGOTTEN: the tombstone `forget` leaves
# What `list` shows of each item (and all it reads of it).
LIST_ATTRIBUTES = (
    "task_id",
    "status",
    "model_family",
    "poll_count",
    "last_polled_at",
    "completed_at",
    "error",
    "last_error",
    "assets",
    "provider_name",
    "dialect",
    "provider_progress",
)


# SigV4 presigned URLs live at most 7 days (S3 documentation, "presigned URLs").
MAX_LINK_SECONDS = 7 * 24 * 3600
# Storage classes whose objects must be restored before a GET works (InvalidObjectState otherwise).
ARCHIVE_CLASSES = ("GLACIER", "DEEP_ARCHIVE")
# Item attributes that hold epoch seconds (tasks.py), shown as times.
EPOCH_ATTRIBUTES = ("first_seen_at", "next_poll_at", "lease_until", "failing_since")
# Pauses between invocations of a throttled poller: about two minutes in all, less than a run's timeout.
THROTTLE_PAUSES = (5, 10, 20, 40, 60)


class OperatorError(Exception):
    """A request the archive cannot carry out, said in one line."""


def explain(exc: Exception) -> str:
    """Why a request to the archive failed (an OperatorError, or AWS's answer), in one line a user can act on."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: configure a profile (--profile) or the AWS_* variables"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_DEFAULT_REGION"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
    return str(exc)


def default_stack_name(directory: Path | None = None) -> str:
    """The stack `sam deploy` would use here: samconfig.toml's stack_name, else the project's name."""
    config_path = (directory or Path.cwd()) / "samconfig.toml"
    if config_path.is_file():
        config = tomllib.loads(config_path.read_text())
        default = config.get("default", {})
        for command in ("global", "deploy"):
            name = default.get(command, {}).get("parameters", {}).get("stack_name")
            if isinstance(name, str) and name:
                return name
    return DEFAULT_STACK


@dataclass(frozen=True)
class StackResources:
    """A deployed archive, named by its stack outputs."""

    stack_name: str
    table_name: str
    bucket_name: str
    topic_arn: str
    poller_function: str
    worker_function: str | None = None
    work_queue_url: str | None = None
    # Every output and parameter of the stack, for what the fields above do not name.
    outputs: Mapping[str, str] = field(default_factory=dict, compare=False)
    parameters: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def find(cls, session: boto3.session.Session, stack_name: str) -> StackResources:
        try:
            stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc):
                message = f"no stack {stack_name} in {session.region_name}: pass --stack or --region"
                raise OperatorError(message) from None
            raise
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        try:
            return cls(
                stack_name=stack_name,
                table_name=outputs["TasksTableName"],
                bucket_name=outputs["ArchiveBucketName"],
                topic_arn=outputs["CompletionTopicArn"],
                poller_function=outputs["PollerFunctionName"],
                worker_function=outputs.get("WorkerFunctionName"),
                work_queue_url=outputs.get("WorkQueueUrl"),
                outputs=outputs,
                parameters={p["ParameterKey"]: str(p.get("ParameterValue")) for p in stacks[0].get("Parameters", [])},
            )
        except KeyError as missing:
            raise OperatorError(f"stack {stack_name} is not a runway-archiver stack (no output {missing})") from None


@dataclass(frozen=True)
class FunctionConfiguration:
    """What a deployed function runs with: its environment and its timeout."""

    environment: dict[str, str]
    timeout_seconds: int
    log_group: str = ""


class Archive:
    """The operator's view of one deployed archive."""

    def __init__(self, session: boto3.session.Session, table_name: str, resources: StackResources | None = None):
        self._session = session
        self._resources = resources
        self._dynamodb = session.resource("dynamodb")  # one resource: each new one costs botocore's models again
        self.table = self._dynamodb.Table(table_name)
        self.store = TaskStore(self.table)  # every write of an item, and the read of one

    @property
    def session(self) -> boto3.session.Session:
        return self._session

    @property
    def resources(self) -> StackResources:
        if self._resources is None:
            raise OperatorError("this command needs the stack (pass --stack), not only a table")
        return self._resources

    # -- reading ------------------------------------------------------------------------------
    def get(self, task_id: str) -> dict[str, Any]:
        item = self.store.get(task_id)
        if item is None:
            raise OperatorError(f"no task {task_id} in table {self.table.name}")
        return from_dynamo(item)  # type: ignore[no-any-return]

    def tasks(self, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Tasks with that status (Query on the status index, then their items) or every task (Scan)."""
        names = {f"#{a}": a for a in LIST_ATTRIBUTES}
        projection = ", ".join(names)
        if status is None:
            pages = self._pages(self.table.scan, ProjectionExpression=projection, ExpressionAttributeNames=names)
            rows = [from_dynamo(item) for item in islice(pages, limit)]
        else:
            keys = list(islice(self.keys_with_status(status), limit))
            rows = self._batch_get(keys, projection, names)
        return sorted(rows, key=lambda row: str(row["task_id"]))

    def keys_with_status(self, status: str, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Keys of the tasks with that status, page after page: a keys-only Query on the status index
        (pages of up to 1 MB unless a `page_size` bounds what is held at once)."""
        pages = self._pages(
            self.table.query,
            **({"Limit": page_size} if page_size else {}),
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": status},
            ProjectionExpression="task_id",
        )
        return ({"task_id": item["task_id"]} for item in pages)

    def pending_keys(self, limit: int) -> list[dict[str, Any]]:
        """Keys of PENDING tasks, at most `limit`."""
        return list(islice(self.keys_with_status(PENDING), limit))

    def items(self, keys: list[dict[str, Any]], attributes: tuple[str, ...]) -> list[dict[str, Any]]:
        """Those attributes of the items with these keys (BatchGetItem)."""
        names = {f"#{a}": a for a in attributes}
        return self._batch_get(keys, ", ".join(names), names)

    def _pages(self, read: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
        """The items of every page of a Query or Scan, one after the other."""
        for page in pages(read, **kwargs):
            yield from page

    def _batch_get(self, keys: list[dict[str, Any]], projection: str, names: dict[str, str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            request: dict[str, Any] = {
                self.table.name: {"Keys": keys[start : start + BATCH_GET_LIMIT], "ProjectionExpression": projection}
                | {"ExpressionAttributeNames": names}
            }
            while request:
                answer = self._dynamodb.batch_get_item(RequestItems=request)
                rows.extend(from_dynamo(item) for item in answer["Responses"].get(self.table.name, []))
                request = answer.get("UnprocessedKeys") or {}
        return rows

    def show(self, task_id: str, link_seconds: int = 3600) -> dict[str, Any]:
        """The item, what S3 holds for each asset, a presigned link to the video, and why the link may not work."""
        if not 0 < link_seconds <= MAX_LINK_SECONDS:
            raise OperatorError(f"--link-seconds must be 1 to {MAX_LINK_SECONDS} (7 days, the SigV4 limit)")
        item = self.get(task_id)
        s3 = self._session.client("s3", config=Config(signature_version="s3v4"))
        objects: dict[str, Any] = {}
        link = None
        warnings: list[str] = []
        for role, asset in (item.get("assets") or {}).items():
            if not asset:
                objects[role] = None
                continue
            try:
                head = s3.head_object(Bucket=asset["bucket"], Key=asset["key"])
            except ClientError as exc:
                objects[role] = {"bucket": asset["bucket"], "key": asset["key"], "missing": str(exc)}
                continue
            objects[role] = {
                "bucket": asset["bucket"],
                "key": asset["key"],
                "size": head["ContentLength"],
                "content_type": head.get("ContentType"),
                "storage_class": head.get("StorageClass", "STANDARD"),
                "last_modified": head["LastModified"].isoformat(),
            }
            objects[role]["restore"] = head.get("Restore")
            if role != "video":
                continue
            storage_class = objects[role]["storage_class"]
            if storage_class in ARCHIVE_CLASSES and 'ongoing-request="false"' not in (head.get("Restore") or ""):
                warnings.append(
                    f"no link: the video is in {storage_class}, where a GET answers InvalidObjectState; restore it "
                    f"first (aws s3api restore-object --bucket {asset['bucket']} --key {asset['key']} "
                    "--restore-request Days=1), then run show again once the restore is done"
                )
                continue
            link = s3.generate_presigned_url(
                "get_object", Params={"Bucket": asset["bucket"], "Key": asset["key"]}, ExpiresIn=link_seconds
            )
            warnings.extend(self._link_lifetime_warnings(link_seconds))
        return {
            "item": item,
            "objects": objects,
            "video_link": link,
            "video_link_seconds": link_seconds,
            "warnings": warnings,
        }

    def _link_lifetime_warnings(self, link_seconds: int) -> list[str]:
        """A presigned URL dies with the credentials that signed it: say when that is earlier."""
        credentials = self._session.get_credentials()
        if credentials is None or not credentials.token:
            return []
        expiry = getattr(credentials, "_expiry_time", None)  # refreshable credentials (SSO, assumed roles)
        if isinstance(expiry, datetime):
            left = int((expiry - datetime.now(UTC)).total_seconds())
            if left >= link_seconds:
                return []
            until = f"at {iso_utc(expiry)} ({left} s)"
        else:
            until = "when they expire"
        return [
            f"the link was signed with temporary credentials (a session token): it stops working {until}, "
            f"whatever --link-seconds says; sign with an IAM user's keys for a link that lasts {link_seconds} s"
        ]

    # -- changing -----------------------------------------------------------------------------
    def retry(self, task_id: str, now: datetime | None = None) -> None:
        """Put a FAILED or EXPIRED task back to PENDING, bookkeeping cleared: the next run polls it afresh."""
        moment = now or datetime.now(UTC)
        if self.store.retry(task_id, iso_utc(moment), int(moment.timestamp())):
            return
        item = self.get(task_id)  # says "no task" when there is none
        if item["status"] not in (FAILED, EXPIRED):
            message = f"{task_id} is {item['status']}: only FAILED or EXPIRED tasks can be retried"
        else:
            message = f"{task_id}: its outcome is still being announced; try again after the next run"
        raise OperatorError(message)

    def replay(self, task_id: str) -> None:
        """Have the archiver publish the task's stored event again: same id, same body, same attributes.

        The topic's policy lets only the archiver's roles publish (an explicit Deny no operator's
        Allow overrides), so this puts the item back in the outbox, as a failed publish leaves it,
        and the next run publishes it. It needs only `dynamodb:UpdateItem` on the table.
        """
        if self.store.replay(task_id):
            return
        item = self.get(task_id)  # says "no task" when there is none
        if item["status"] == FORGOTTEN:
            raise OperatorError(f"{task_id} was forgotten: its archive is erased, there is nothing to replay")
        if item["status"] not in TERMINAL_STATUSES or not item.get("event"):
            raise OperatorError(f"{task_id} is {item['status']}: it has no event to replay yet")
        raise OperatorError(f"{task_id}: its event is already waiting to be published; the next run publishes it")

    # -- running ------------------------------------------------------------------------------
    def invoke_poller(
        self,
        scheduled_time: str,
        on_throttle: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """One poller run in AWS, now, waited for (the function's timeout is at most 15 minutes).

        Synchronous (RequestResponse): Lambda never retries it and never sends it to the poller's
        dead-letter queue, which only takes asynchronous invocations (the schedule's). A poller
        whose reserved concurrency is taken answers TooManyRequestsException: tried again after a
        pause, `on_throttle` told why, up to about two minutes.
        """
        client = self._session.client(
            "lambda", config=Config(read_timeout=960, connect_timeout=10, retries={"total_max_attempts": 1})
        )
        attempts = len(THROTTLE_PAUSES) + 1
        for attempt, pause in enumerate((*THROTTLE_PAUSES, None), start=1):
            try:
                answer = client.invoke(
                    FunctionName=self.resources.poller_function,
                    InvocationType="RequestResponse",
                    Payload=json.dumps({"scheduled_time": scheduled_time}).encode(),
                )
                break
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TooManyRequestsException":
                    raise
                reason = str(exc.response.get("Reason") or exc.response.get("Error", {}).get("Message"))
                if pause is None:
                    raise OperatorError(
                        f"the poller stayed throttled for {sum(THROTTLE_PAUSES)} s ({reason}): scheduled runs hold its "
                        "reserved concurrency; try again in a few minutes"
                    ) from None
                if on_throttle:
                    on_throttle(
                        f"the poller is throttled ({reason}): its reserved concurrency is taken, most likely by "
                        f"scheduled runs; trying again in {pause} s (attempt {attempt + 1} of {attempts})"
                    )
                sleep(pause)
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else payload
            raise OperatorError(f"the poller run failed: {message}")
        if not isinstance(payload, dict):
            raise OperatorError(f"the poller answered {payload!r}, not a run summary")
        return payload

    def next_due(self) -> int | None:
        """When the next PENDING task is due (epoch seconds; next_poll_at is projected on the status index)."""
        pages = self._pages(
            self.table.query,
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :status",
            ExpressionAttributeNames={"#status": "status", "#next": "next_poll_at"},
            ExpressionAttributeValues={":status": PENDING},
            ProjectionExpression="#next",
        )
        due = [int(item.get("next_poll_at", 0)) for item in pages]
        return min(due) if due else None

    def function_configuration(self, function: str) -> FunctionConfiguration:
        configuration = self._session.client("lambda").get_function_configuration(FunctionName=function)
        variables = configuration.get("Environment", {}).get("Variables", {})
        log_group = configuration.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{function}"
        return FunctionConfiguration({k: str(v) for k, v in variables.items()}, configuration["Timeout"], log_group)


def pages(read: Callable[..., Any], **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
    """A Query or Scan page by page (`read` is the table's query or scan): never the whole answer at once."""
    while True:
        page = read(**kwargs)
        yield page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def summary_line(summary: Mapping[str, Any]) -> str:
    shown = ("due", "polled", "still_pending", "archived", "failed", "expired", "announced", "dispatched")
    counts = ", ".join(f"{k}={summary[k]}" for k in shown if summary.get(k))
    return counts or "nothing was due"
