"""`runway-archiver status`: is the archive healthy? One screen, read-only.

Every read is cheap and bounded: a COUNT Query per status on the status index (never a Scan),
the pending tasks' keys and their `first_seen_at`, the poller's log group for its last
`run finished` line, one attribute read per dead-letter queue, the key secret (its value is
never printed) and the stack's alarms.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from runway_archiver_lambda.clock import iso_utc
from runway_archiver_lambda.feed import DEFAULT_FAMILY
from runway_archiver_lambda.tasks import PENDING, STATUS_INDEX

from .archive import STATUSES, Archive, summary_line

if TYPE_CHECKING:
    from collections.abc import Iterator

    import boto3

# At most this many pending tasks are read for the oldest one; a larger backlog says so.
PENDING_READ_LIMIT = 2000
DEFAULT_STUCK_MINUTES = 120  # the template's StuckTaskAlarmMinutes default
RUN_FINISHED = "run finished"  # the poller's log line that carries a run's summary
LOOK_BACK = (timedelta(minutes=15), timedelta(hours=24))  # where the last run is looked for, in turn


@dataclass
class Status:
    """What `status` found, and what of it needs attention."""

    stack: str
    region: str | None
    tasks: dict[str, int]
    oldest_pending: dict[str, Any] | None
    never_polled: int
    pending_read_limited: bool
    stuck_after_minutes: int
    last_run: dict[str, Any] | None
    last_run_source: str
    dead_letter_queues: dict[str, int]
    api_key: str  # "holds a value", "empty", or why it could not be read
    alarms_in_alarm: list[str]
    dashboard_url: str | None
    needs_attention: list[str] = field(default_factory=list)
    # Pending tasks per model family (runway, kling, sora...), among those read for the oldest.
    pending_by_provider: dict[str, int] = field(default_factory=dict)
    # A Provider=runway stack's GatewayApiKeySecret (the other families' key), as `api_key`; None: no such secret.
    gateway_key: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def lines(self, now: datetime) -> Iterator[str]:
        yield f"stack            {self.stack} ({self.region})"
        yield "tasks            " + " · ".join(f"{status} {count}" for status, count in self.tasks.items())
        if self.oldest_pending:
            oldest = self.oldest_pending
            read = f" (among the first {PENDING_READ_LIMIT} read)" if self.pending_read_limited else ""
            yield (
                f"oldest pending   {oldest['task_id']}, first seen {oldest['first_seen_at']}, "
                f"{_ago(oldest['age_seconds'])}{read}; stuck after {self.stuck_after_minutes} min"
            )
        elif self.tasks.get(PENDING):
            yield "oldest pending   none seen by a run yet"
        else:
            yield "oldest pending   none: no task is pending"
        if self.never_polled:
            yield f"                 {self.never_polled} pending task(s) not yet seen by a run"
        if set(self.pending_by_provider) - {DEFAULT_FAMILY}:  # a Runway-only archive reads as it always did
            yield "pending by model " + " · ".join(f"{name} {n}" for name, n in self.pending_by_provider.items())
        if self.last_run:
            when = self.last_run["at"]
            age = (now - datetime.fromisoformat(when)).total_seconds()
            yield f"last run         {when}, {_ago(age)}: {summary_line(self.last_run['summary'])}"
        else:
            yield f"last run         none found in {self.last_run_source} (last 24 hours)"
        yield "dead letters     " + (
            " · ".join(f"{name} {depth}" for name, depth in self.dead_letter_queues.items()) or "no queues found"
        )
        yield f"API key secret   {self.api_key}"
        if self.gateway_key is not None:
            yield f"gateway key      {self.gateway_key}"
        firing = ", ".join(self.alarms_in_alarm)
        yield f"alarms           {firing} in ALARM" if firing else "alarms           none in ALARM"
        if self.dashboard_url:
            yield f"dashboard        {self.dashboard_url}"
        if self.needs_attention:
            yield f"NEEDS ATTENTION ({len(self.needs_attention)}):"
            yield from (f"  - {line}" for line in self.needs_attention)
        else:
            yield "OK: nothing needs attention"


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min ago"
    return f"{seconds / 3600:.1f} h ago"


def archive_status(archive: Archive, session: boto3.session.Session, now: datetime | None = None) -> Status:
    now = now or datetime.now(UTC)
    resources = archive.resources
    stuck_minutes = int(resources.parameters.get("StuckTaskAlarmMinutes") or DEFAULT_STUCK_MINUTES)
    tasks = {status: _count(archive, status) for status in STATUSES}
    oldest, never_polled, limited, by_provider = _oldest_pending(archive, now)
    poller = archive.function_configuration(resources.poller_function)
    log_group = poller.log_group
    # The secret the poller reads (its environment), else the stack output naming it.
    key_secret = poller.environment.get("API_KEY_SECRET_ARN") or resources.outputs.get("ApiKeySecretArn")
    last_run = _last_run(session, log_group, now)
    stack_resources = _stack_resources(session, resources.stack_name)
    queues = _dead_letter_depths(session, stack_resources)
    api_key = _api_key_state(session, key_secret)
    gateway_secret = poller.environment.get("GATEWAY_API_KEY_SECRET_ARN") or resources.outputs.get(
        "GatewayApiKeySecretArn"
    )
    gateway_key = _api_key_state(session, gateway_secret) if gateway_secret else None
    alarms = _alarms_in_alarm(session, stack_resources)

    attention = []
    if oldest and oldest["age_seconds"] > stuck_minutes * 60:
        attention.append(
            f"{oldest['task_id']} has been pending {oldest['age_seconds'] // 60} min since first seen (stuck after "
            f"{stuck_minutes}): `{_prog()} show {oldest['task_id']}` says what was last seen"
        )
    for name, depth in queues.items():
        if depth:
            attention.append(
                f"the {name} dead-letter queue holds {depth} message(s): read one to find the cause, fix it, "
                "purge the queue (docs/operations.md)"
            )
    if api_key.startswith("missing"):
        attention.append(f"the API key secret {key_secret} does not exist: the poller cannot read a key")
    if api_key == "empty":
        attention.append(
            "the API key secret holds no value: nothing is archived until you put the key "
            f"(aws secretsmanager put-secret-value --secret-id {key_secret} "
            "--secret-string YOUR_COMETAPI_KEY)"
        )
    if gateway_key is not None and (gateway_key == "empty" or gateway_key.startswith("missing")):
        attention.append(
            "the gateway key secret holds no key: every task but Runway's ends FAILED until you put the "
            "CometAPI key (make api-key GATEWAY=1)"
        )
    if last_run and last_run["summary"].get("configuration_error"):
        attention.append(f"the last run stopped on a configuration error: {last_run['summary']['configuration_error']}")
    attention.extend(f"alarm {name} is in ALARM: its description says what it means" for name in alarms)
    return Status(
        stack=resources.stack_name,
        region=session.region_name,
        tasks=tasks,
        oldest_pending=oldest,
        never_polled=never_polled,
        pending_by_provider=by_provider,
        pending_read_limited=limited,
        stuck_after_minutes=stuck_minutes,
        last_run=last_run,
        last_run_source=f"log group {log_group}",
        dead_letter_queues=queues,
        api_key=api_key,
        gateway_key=gateway_key,
        alarms_in_alarm=alarms,
        dashboard_url=resources.outputs.get("DashboardUrl"),
        needs_attention=attention,
    )


def _prog() -> str:
    return "runway-archiver"


def _count(archive: Archive, status: str) -> int:
    """Items with that status: a COUNT Query on the status index, every page."""
    total = 0
    kwargs: dict[str, Any] = {
        "IndexName": STATUS_INDEX,
        "KeyConditionExpression": "#status = :status",
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": {":status": status},
        "Select": "COUNT",
    }
    while True:
        page = archive.table.query(**kwargs)
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _oldest_pending(archive: Archive, now: datetime) -> tuple[dict[str, Any] | None, int, bool, dict[str, int]]:
    """The pending task first seen longest ago, how many no run has seen yet, whether the read was cut,
    and the pending tasks per model family."""
    keys = archive.pending_keys(PENDING_READ_LIMIT + 1)
    limited = len(keys) > PENDING_READ_LIMIT
    rows = archive.items(
        keys[:PENDING_READ_LIMIT], ("task_id", "first_seen_at", "poll_count", "last_error", "model_family")
    )
    by_provider = dict(sorted(Counter(str(row.get("model_family") or DEFAULT_FAMILY) for row in rows).items()))
    seen = [row for row in rows if row.get("first_seen_at")]
    never_polled = len(rows) - len(seen)
    if not seen:
        return None, never_polled, limited, by_provider
    oldest = min(seen, key=lambda row: int(row["first_seen_at"]))
    first_seen = datetime.fromtimestamp(int(oldest["first_seen_at"]), UTC)
    return (
        {
            "task_id": oldest["task_id"],
            "first_seen_at": iso_utc(first_seen),
            "age_seconds": int((now - first_seen).total_seconds()),
            "poll_count": oldest.get("poll_count", 0),
            "last_error": oldest.get("last_error"),
        },
        never_polled,
        limited,
        by_provider,
    )


def _last_run(session: boto3.session.Session, log_group: str, now: datetime) -> dict[str, Any] | None:
    """The poller's last `run finished` log line: when, and the run's summary."""
    logs = session.client("logs")
    for window in LOOK_BACK:
        try:
            events = _events(logs, log_group, int((now - window).timestamp() * 1000))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None  # no function has logged yet
            raise
        # The latest first; of lines logged in the same millisecond, the one delivered last.
        for _, event in sorted(enumerate(events), key=lambda pair: (int(pair[1]["timestamp"]), pair[0]), reverse=True):
            line = _json_line(event["message"])
            if isinstance(line, dict) and line.get("message") == RUN_FINISHED and isinstance(line.get("summary"), dict):
                return {"at": iso_utc(event["timestamp"] / 1000), "summary": line["summary"]}
    return None


def _json_line(text: str) -> Any:
    """A log line as JSON; a line Lambda wrapped (LogFormat JSON) is unwrapped once."""
    try:
        line = json.loads(text)
        if isinstance(line, dict) and isinstance(line.get("message"), str) and line["message"].startswith("{"):
            return json.loads(line["message"])
    except ValueError:
        return None
    return line


def _events(logs: Any, log_group: str, start_ms: int) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {"logGroupName": log_group, "startTime": start_ms, "filterPattern": f'"{RUN_FINISHED}"'}
    events: list[dict[str, Any]] = []
    while True:
        page = logs.filter_log_events(**kwargs)
        events.extend(page.get("events", []))
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _stack_resources(session: boto3.session.Session, stack_name: str) -> list[dict[str, Any]]:
    cloudformation = session.client("cloudformation")
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StackName": stack_name}
    while True:
        page = cloudformation.list_stack_resources(**kwargs)
        found.extend(dict(summary) for summary in page["StackResourceSummaries"])
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def _dead_letter_depths(session: boto3.session.Session, resources: list[dict[str, Any]]) -> dict[str, int]:
    """Messages in each of the stack's dead-letter queues (visible and in flight), by short name."""
    sqs = session.client("sqs")
    depths = {}
    for resource in sorted(resources, key=lambda r: str(r["LogicalResourceId"])):
        logical_id = str(resource["LogicalResourceId"])
        if resource["ResourceType"] != "AWS::SQS::Queue" or not logical_id.endswith("DeadLetterQueue"):
            continue
        if not resource.get("PhysicalResourceId"):
            continue
        attributes = sqs.get_queue_attributes(
            QueueUrl=resource["PhysicalResourceId"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        name = logical_id.removesuffix("DeadLetterQueue").lower()
        depths[name] = sum(int(value) for value in attributes.values())
    return depths


def _api_key_state(session: boto3.session.Session, secret_arn: str | None) -> str:
    """Whether the key secret holds a value; the value itself is never kept or printed."""
    if not secret_arn:
        return "not in the stack outputs"
    try:
        value = session.client("secretsmanager").get_secret_value(SecretId=secret_arn).get("SecretString") or ""
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            # A secret created without a value (a fresh deploy) has no AWSCURRENT version.
            return "empty" if "secret value" in str(error.get("Message")) else "missing: the secret does not exist"
        return f"could not be read by you ({error.get('Code')}); the poller may still read it"
    return "holds a value" if value.strip() else "empty"


def _alarms_in_alarm(session: boto3.session.Session, resources: list[dict[str, Any]]) -> list[str]:
    names = [
        str(r["PhysicalResourceId"])
        for r in resources
        if r["ResourceType"] == "AWS::CloudWatch::Alarm" and r.get("PhysicalResourceId")
    ]
    cloudwatch = session.client("cloudwatch")
    firing: list[str] = []
    for start in range(0, len(names), 100):
        answer = cloudwatch.describe_alarms(AlarmNames=names[start : start + 100], StateValue="ALARM")
        every = [*answer.get("MetricAlarms", []), *answer.get("CompositeAlarms", [])]
        firing.extend(alarm["AlarmName"] for alarm in every)
    return sorted(firing)
