"""The task life cycle tried by generated interleavings (Hypothesis stateful testing) against the
embedded AWS, checked after every step against a simple model of what must hold.

Steps (rules): register tasks (again, too); move the emulated provider to any status in the
task's dialect; let minutes or hours pass and tick the scheduled run (the poller's handler, with
the event's time), keeping the due tasks or handing them all to the work queue, or run the worker
(the SQS work queue's handler); deliver callbacks (valid, twice, late, with a wrong or no token, with a
body that lies); deliver a work message again (late or twice); crash a run or a worker between
any two of its AWS writes; and the operator's retry, replay and forget (the client's Archive API,
as the CLI calls it).

Invariants, after every step:
- every outcome is announced exactly once, by event id, on an SQS queue subscribed to the topic;
  more only where the operator asked (replay, forget) or where a run died between its publish
  and the outbox mark (SNS is at least once there; the id stays the same, for consumers to drop);
- no ARCHIVED task without every file, its manifest and their checksums in S3 (the bytes the
  provider's CDN served);
- no forgotten task's object, version, delete marker, open upload or event body comes back;
- no task left PENDING past its expiry by a run that could claim it;
- outcomes agree with the provider (ARCHIVED only after it succeeded ...), statuses move only as
  the life cycle allows, and the operator's commands and the callback function answer as the
  model predicts.
When an interleaving ends, the runs catch up (leases run out, the outbox drains) and every
outcome must have been announced.

The stack is deployed once per test (a deploy takes seconds); each interleaving starts from an
empty table, empty queues and an empty bucket, with task ids never used before, so objects and event ids of
earlier interleavings cannot be mistaken for its own. Runs use one thread (POLL_CONCURRENCY=1)
and a clock that does not tick by itself, so an interleaving replays the same way every time.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, cast

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from moto.core.model_instances import reset_model_data

from runway_archiver.consumer import receive_events
from runway_archiver.local.emulator import DIALECTS, FeedEmulator, media_sha256
from runway_archiver.local.engines import LocalLambdaContext
from runway_archiver.local.queue import drain
from runway_archiver.register import register_tasks
from runway_archiver.stack.archive import Archive as Operated
from runway_archiver.stack.archive import OperatorError, StackResources
from runway_archiver.stack.operations import forget
from runway_archiver_lambda.events import EVENT_TYPES, event_id
from runway_archiver_lambda.tasks import ARCHIVED, EXPIRED, FAILED, FORGOTTEN, PENDING, TERMINAL_STATUSES
from tests.model.budget import Tally, model_settings, tally
from tests.support.archive import Archive, epoch, minutes_after_base
from tests.support.samples import load_event

# The provider's statuses, as the emulator scripts them (each dialect says them in its own words).
PROVIDER_STATUSES = ("queued", "throttled", "running", "unknown", "succeeded", "failed", "cancelled")
PROVIDER_ENDS = ("succeeded", "failed", "cancelled")
# Minutes that pass before a run or a worker: within a poll interval, past a lease (5 min) and a dispatch
# lease (15 min), past the new-task grace (10 min), the persistent-error grace (1 h) and expiry.
PAUSES = (1, 3, 6, 16, 45, 130)
EXPIRE_AFTER_HOURS = 2  # the stack's 24 h scaled down, so that interleavings of tens of steps reach it
# Every run, worker and callback of the model: one thread each, no metrics on stdout.
FUNCTION_ENV = {
    "POLL_CONCURRENCY": "1",
    "ARCHIVE_CONCURRENCY": "1",
    "EXPIRE_AFTER_HOURS": str(EXPIRE_AFTER_HOURS),
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
}
# AWS calls that change something: a crash is injected before one of them.
WRITES = ("Put", "Update", "Delete", "Create", "Complete", "Upload", "Copy", "Send", "Publish", "Abort", "BatchWrite")
_ids = itertools.count(1)  # task ids are never reused, across interleavings and tests


class Crashed(Exception):
    """The process running the handler died (injected): from then on none of its AWS calls arrives."""


@dataclass
class Fate:
    """What becomes of one invocation's AWS calls (botocore's event hooks ask it before each): it
    dies before its write number `crash_after` (None: it lives); the messages it sends are kept."""

    crash_after: int | None = None
    writes: int = 0
    crashed: bool = False
    last_published: tuple[str, str] | None = None  # the last event published: its id and its task
    sent: list[str] = field(default_factory=list)

    def before_call(self, model: Any, **_: Any) -> None:
        if self.crashed:
            raise Crashed(f"{model.name} after the crash")
        if not model.name.startswith(WRITES):
            return
        if self.crash_after is not None and self.writes >= self.crash_after:
            self.crashed = True
            raise Crashed(f"before {model.name}, write {self.writes + 1}")
        self.writes += 1

    def sending(self, params: dict[str, Any], **_: Any) -> None:
        if not self.crashed:
            self.sent.extend(entry["MessageBody"] for entry in params.get("Entries", []))

    def publishing(self, params: dict[str, Any], **_: Any) -> None:
        if not self.crashed:
            event = json.loads(params["Message"])
            self.last_published = (event["id"], event["subject"])


@dataclass
class ModelTask:
    """What the model knows of one task."""

    task_id: str
    dialect: str
    outputs: int
    provider: str | None = None  # its status at the provider; None: the provider does not know it (yet)
    status: str | None = None  # as last observed; None: no item
    completed_at: str | None = None
    forgotten: bool = False  # erased, and not registered again since
    allowed: set[str | None] = field(default_factory=set)  # statuses the next observation may show besides the outcomes


class Harness:
    """The deployed stack, the feed emulator and the operator's view of them, shared by the
    interleavings of a test; the three functions run in this process as warm Lambda containers
    (built once, reused, as Lambda reuses a container), the poller and the worker on one boto3
    session whose event hooks ask the invocation's `Fate` before every call."""

    def __init__(self, archive: Archive, feed: FeedEmulator, monkeypatch: pytest.MonkeyPatch, counted: Tally) -> None:
        self.archive, self.feed, self.monkeypatch, self.tally = archive, feed, monkeypatch, counted
        stack = archive.stack
        for name, value in {**stack.every_environment, **FUNCTION_ENV}.items():
            monkeypatch.setenv(name, value)  # before the handlers' modules are imported, as in Lambda
        from runway_archiver_lambda.wiring import build_callbacks, build_poller

        self.fate = Fate()
        session = boto3.session.Session()
        session.events.register("before-call", self._before_call)
        session.events.register("provide-client-params.sqs.SendMessageBatch", self._sending)
        session.events.register("provide-client-params.sns.Publish", self._publishing)
        poller_env = {**stack.function_environment, **FUNCTION_ENV}
        self.pollers = {
            fanout: build_poller({**poller_env, **({"FANOUT_THRESHOLD": "0"} if fanout else {})}, session)
            for fanout in (False, True)
        }
        self.worker = build_poller({**stack.environments["WorkerFunction"], **FUNCTION_ENV}, session)
        self.callbacks = build_callbacks({**stack.environments["IntakeFunction"], **FUNCTION_ENV})
        operator_session = boto3.session.Session()
        resources = StackResources.find(operator_session, stack.stack_name)
        self.operator = Operated(operator_session, resources.table_name, resources)
        self.table = boto3.resource("dynamodb").Table(stack.table_name)
        self.s3 = boto3.client("s3")
        self.sqs = boto3.client("sqs")
        self.bucket = stack.bucket_name
        self.token = archive.callback_token
        self.log = io.StringIO()

    # The hooks ask the fate of the invocation under way (`self.fate` changes with each one).
    def _before_call(self, **kwargs: Any) -> None:
        self.fate.before_call(**kwargs)

    def _sending(self, **kwargs: Any) -> None:
        self.fate.sending(**kwargs)

    def _publishing(self, **kwargs: Any) -> None:
        self.fate.publishing(**kwargs)

    def reset(self) -> None:
        """An empty table, empty queues and a fresh log: the next interleaving starts clean."""
        keys = [{"task_id": item["task_id"]} for item in self.table.scan(ProjectionExpression="task_id")["Items"]]
        with self.table.batch_writer() as batch:
            for key in keys:
                batch.delete_item(Key=key)
        # Received and deleted (SQS allows one PurgeQueue a minute). A work message still in flight
        # after a crash comes back later, names a task no longer in the table and changes nothing.
        for queue_url in (self.archive.work_queue_url, self.archive.queue_url):
            while messages := self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
                for message in messages:
                    self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        self._empty_bucket()
        # moto keeps every model instance it ever made (for its dashboard): thousands of
        # interleavings' objects and messages would stay in memory until the session ends.
        reset_model_data()
        self.log = io.StringIO()

    def _empty_bucket(self) -> None:
        """Every version, delete marker and open upload of earlier interleavings goes: their bytes
        would otherwise stay in memory (moto keeps objects there) for the rest of the session."""
        for upload in self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []):
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
            entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            if entries:
                self.s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": e["Key"], "VersionId": e["VersionId"]} for e in entries]},
                )

    def run(self, at: str, fate: Fate, *, fanout: bool) -> None:
        """The poller's handler with the Scheduler's event for `at`; the wall clock says `at` too."""
        from runway_archiver_lambda.handlers import poller as entry

        poller = self.pollers[fanout]
        moment = epoch(at)
        poller.wall_clock = lambda: moment  # not ticking: leases run out at exact minutes
        self._invoke(entry, poller, fate, lambda: entry.lambda_handler({"scheduled_time": at}, LocalLambdaContext()))

    def work(self, at: str, fate: Fate) -> None:
        """The worker's handler on what the work queue holds, as the SQS trigger would (local.queue.drain)."""
        from runway_archiver_lambda.handlers import worker as entry

        moment = epoch(at)
        self.worker.wall_clock = lambda: moment
        self._invoke(
            entry,
            self.worker,
            fate,
            lambda: drain(
                self.sqs,
                self.archive.work_queue_url,
                entry.lambda_handler,
                lambda: LocalLambdaContext("runway-archiver-worker"),
            ),
        )

    def _invoke(self, entry: Any, poller: Any, fate: Fate, call: Any) -> None:
        self.fate = fate
        self.monkeypatch.setattr(entry, "_poller", poller)
        self.monkeypatch.setattr(entry.logger.registered_handler, "stream", self.log)
        try:
            call()
        except Crashed:
            pass  # the invocation died; what it wrote before stays
        finally:
            self.fate = Fate()

    def callback(self, body: str, token: str | None) -> dict[str, Any]:
        """A POST to the callback function's URL (the stack's token unless `token` is given)."""
        from runway_archiver_lambda.handlers import callback as entry

        self.monkeypatch.setattr(entry, "_callbacks", self.callbacks)
        self.monkeypatch.setattr(entry.logger.registered_handler, "stream", self.log)
        token = self.token if token is None else token
        event = load_event("callback/function-url.json")
        event["body"], event["isBase64Encoded"] = body, False
        event["queryStringParameters"] = {"token": token} if token else {}
        event["rawQueryString"] = f"token={token}" if token else ""
        reply: dict[str, Any] = entry.lambda_handler(event, LocalLambdaContext("runway-archiver-callback", 10))
        return reply


class LifecycleMachine(RuleBasedStateMachine):
    harness: ClassVar[Harness]

    tasks = Bundle("tasks")
    messages = Bundle("messages")

    def __init__(self) -> None:
        super().__init__()
        self.h = self.harness
        self.h.reset()
        self.h.tally.interleavings += 1
        self.minute = 0
        self.model: dict[str, ModelTask] = {}
        self.expected: Counter[str] = Counter()  # announcements owed, by event id
        self.permitted: Counter[str] = Counter()  # announcements allowed beyond them (a run died after its publish)
        self.received: Counter[str] = Counter()
        self.expiry_due: set[str] = set()  # must not be PENDING after the last run
        self.healthy = True

    # -- helpers ------------------------------------------------------------------------------
    def _begin(self, name: str) -> None:
        self.healthy = False
        self.h.tally.steps += 1
        self.h.tally.rules[name] += 1

    @property
    def at(self) -> str:
        return minutes_after_base(self.minute)

    @property
    def now_epoch(self) -> int:
        return int(epoch(self.at))

    def _now(self) -> datetime:
        return datetime.fromisoformat(self.at)

    def _item(self, task_id: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.h.table.get_item(Key={"task_id": task_id}, ConsistentRead=True).get("Item")
        return item

    def _lease_free(self, item: dict[str, Any]) -> bool:
        return int(item.get("lease_until") or 0) <= self.now_epoch

    def _run(self, fate: Fate, *, fanout: bool = False) -> None:
        self.h.run(self.at, fate, fanout=fanout)
        self._after(fate, "run")

    def _work(self, fate: Fate) -> None:
        self.h.work(self.at, fate)
        self._after(fate, "worker")

    def _after(self, fate: Fate, who: str) -> None:
        if not fate.crashed:
            return
        self.h.tally.notes[f"{who} crashed"] += 1
        if fate.last_published is None:
            return
        # Died after its last publish but before that event's outbox mark (the table says so: the
        # item still waits to announce that very event): the next run publishes it again. Not only
        # when the publish was the last write: a tombstone's mark is tried as a conditional delete
        # first (forget --allow-again), then as the update, and the crash can fall between them.
        published, task_id = fate.last_published
        item = self._item(task_id)
        if item is not None and "outbox" in item and json.loads(str(item["event"]))["id"] == published:
            self.permitted[published] += 1
            self.h.tally.notes["crash between a publish and its outbox mark"] += 1

    def _expiry_eligible(self) -> set[str]:
        """PENDING tasks past their expiry that the next run can claim: due and not held."""
        items: list[dict[str, Any]] = self.h.table.scan(ConsistentRead=True)["Items"]
        limit = EXPIRE_AFTER_HOURS * 3600
        return {
            str(item["task_id"])
            for item in items
            if item["status"] == PENDING
            and "first_seen_at" in item
            and self.now_epoch - int(item["first_seen_at"]) >= limit
            and int(item.get("next_poll_at") or 0) <= self.now_epoch
            and self._lease_free(item)
        }

    # -- the user and the provider ------------------------------------------------------------
    @rule(
        target=tasks,
        dialect=st.sampled_from(DIALECTS),
        outputs=st.integers(1, 2),
        provider=st.none() | st.sampled_from(PROVIDER_STATUSES),
    )
    def register(self, dialect: str, outputs: int, provider: str | None) -> str:
        """A new task; the provider has it at `provider`, or does not know the id yet (None), as a
        brand-new one may answer."""
        self._begin("register")
        task_id = f"model-{next(_ids)}"
        self.model[task_id] = ModelTask(task_id, dialect, outputs, provider=provider, allowed={PENDING})
        if provider is not None:
            self.h.feed.set_status(task_id, provider, dialect=dialect, outputs=outputs)
        registration = register_tasks(self.h.table, [task_id])
        assert registration.registered == [task_id]
        return task_id

    @rule(task=tasks)
    def register_again(self, task: str) -> None:
        """A known id is never registered twice; a forgotten one only once its tombstone is gone."""
        self._begin("register_again")
        item = self._item(task)
        registration = register_tasks(self.h.table, [task])
        assert (task in registration.registered) == (item is None), (item, registration)
        if item is not None:
            assert (task in registration.forgotten) == (item["status"] == FORGOTTEN)
        else:
            self.model[task].forgotten = False
            self.model[task].allowed.add(PENDING)

    @precondition(lambda self: any(t.provider not in PROVIDER_ENDS for t in self.model.values()))
    @rule(data=st.data(), status=st.sampled_from(PROVIDER_STATUSES))
    def provider_moves(self, data: st.DataObject, status: str) -> None:
        self._begin("provider_moves")
        moving = sorted(t for t, task in self.model.items() if task.provider not in PROVIDER_ENDS)
        task = self.model[data.draw(st.sampled_from(moving), label="task")]
        task.provider = status
        self.h.feed.set_status(task.task_id, status, dialect=task.dialect, outputs=task.outputs)

    # -- the archiver -------------------------------------------------------------------------
    @rule(
        target=messages,
        minutes=st.sampled_from(PAUSES),
        crash_after=st.none() | st.integers(0, 10),
        fanout=st.sampled_from([False, False, False, True]),  # one run in four hands everything out
    )
    def tick(self, minutes: int, crash_after: int | None, fanout: bool) -> Any:
        """`minutes` pass, then the scheduled run; `fanout`: it hands every due task to the work queue."""
        self._begin("tick")
        self.minute += minutes
        eligible = self._expiry_eligible()
        fate = Fate(crash_after)
        self._run(fate, fanout=fanout)
        self.expiry_due = set() if fate.crashed or fanout else eligible
        if self.expiry_due:
            self.h.tally.notes["task past its expiry, checked after a run"] += len(self.expiry_due)
        return multiple(*fate.sent)

    @rule(minutes=st.sampled_from((0, *PAUSES)), crash_after=st.none() | st.integers(0, 10))
    def work(self, minutes: int, crash_after: int | None) -> None:
        """`minutes` pass, then the worker takes what the work queue holds."""
        self._begin("work")
        self.minute += minutes
        self._work(Fate(crash_after))

    @rule(message=messages)
    def redeliver(self, message: str) -> None:
        """SQS delivers a work message again (at least once), late or twice."""
        self._begin("redeliver")
        self.h.sqs.send_message(QueueUrl=self.h.archive.work_queue_url, MessageBody=message)

    @rule(
        task=tasks | st.just("never-registered"),
        kind=st.sampled_from(["valid", "twice", "lying", "wrong-token", "no-token"]),
    )
    def callback(self, task: str, kind: str) -> None:
        """The provider's callback (for a task of ours or one nobody registered); only the token and
        the item decide the answer, never the body."""
        self._begin("callback")
        item = self._item(task)
        if kind == "lying":  # says succeeded, with media URLs of its own, whatever the provider says
            body = json.dumps({**load_event("feed/succeeded.json")["data"], "task_id": task})
        else:
            provider = self.model[task].provider if task in self.model else None
            body = json.dumps({"task_id": task, "status": provider or "queued"})
        token = {"wrong-token": "not-the-token", "no-token": ""}.get(kind)
        if token is not None:
            expected = 401
        elif item is None:
            expected = 404
        else:
            expected = {PENDING: 202, FORGOTTEN: 410}.get(item["status"], 200)
        for _ in range(2 if kind == "twice" else 1):
            reply = self.h.callback(body, token)
            assert reply["statusCode"] == expected, (kind, item and item["status"], reply)

    # -- the operator -------------------------------------------------------------------------
    @rule(task=tasks)
    def retry(self, task: str) -> None:
        self._begin("retry")
        item = self._item(task)
        predicted = (
            item is not None and item["status"] in (FAILED, EXPIRED) and "outbox" not in item and self._lease_free(item)
        )
        try:
            self.h.operator.retry(task, now=self._now())
            done = True
        except OperatorError:
            done = False
        assert done == predicted, (item, done)
        if done:
            self.model[task].allowed.add(PENDING)

    @rule(task=tasks)
    def replay(self, task: str) -> None:
        self._begin("replay")
        item = self._item(task)
        predicted = (
            item is not None
            and item["status"] in TERMINAL_STATUSES
            and "event" in item
            and "completed_at" in item
            and "outbox" not in item
        )
        try:
            self.h.operator.replay(task)
            done = True
        except OperatorError:
            done = False
        assert done == predicted, (item, done)
        if done and item is not None:
            self.expected[event_id(task, item["status"])] += 1  # asked for: the same event once more

    @rule(task=tasks, allow_again=st.booleans())
    def forget(self, task: str, allow_again: bool) -> None:
        self._begin("forget")
        item = self._item(task)
        predicted = (
            item is not None and self._lease_free(item) and not ("outbox" in item and item["status"] != FORGOTTEN)
        )
        try:
            forget(self.h.operator, task, allow_again=allow_again, now=self._now())
            done = True
        except OperatorError:
            done = False
        assert done == predicted, (item, done)
        if done and item is not None:
            model = self.model[task]
            model.forgotten = True
            model.allowed.update({FORGOTTEN, None} if allow_again else {FORGOTTEN})
            # The FORGOTTEN event is queued once, when the erasure is recorded done: by the first
            # forget, or by the one that finishes an erasure cut short. A forget of a tombstone whose
            # event is queued or out erases again (nothing is left) and announces nothing more.
            if item["status"] != FORGOTTEN or "event" not in item:
                self.expected[event_id(task, FORGOTTEN)] += 1
            if item["status"] == FORGOTTEN:
                self.h.tally.notes["forget of a forgotten task"] += 1

    # -- what must hold -----------------------------------------------------------------------
    @invariant()
    def check(self) -> None:
        items = {str(item["task_id"]): item for item in self.h.table.scan(ConsistentRead=True)["Items"]}
        listing = self._objects()
        for task in self.model.values():
            item = items.get(task.task_id)
            self._check_transition(task, item)  # an outcome recorded since the last step: one event owed
            if item is not None and item["status"] == ARCHIVED:
                self._check_archived_objects(task, item, listing)
            if task.forgotten:
                self._check_forgotten(task, item, listing)
        self._check_events()
        stuck = sorted(t for t in self.expiry_due if items.get(t, {}).get("status") == PENDING)
        assert not stuck, f"PENDING past their expiry after a run that could claim them: {stuck}"
        self.expiry_due = set()
        self.healthy = True

    def _check_events(self) -> None:
        for event in receive_events(self.h.sqs, self.h.archive.queue_url):
            self.received[event["id"]] += 1
            task = self.model.get(event["subject"])
            assert task is not None, f"an event for a task of no interleaving: {event['subject']}"
            status = event["data"]["status"]
            assert event["id"] == event_id(task.task_id, status) and event["type"] == EVENT_TYPES[status]
            if task.forgotten:
                assert status == FORGOTTEN, f"{task.task_id} was forgotten, yet its {status} event came out"
        for eid, count in self.received.items():
            owed = self.expected[eid] + self.permitted[eid]
            assert count <= owed, f"event {eid} announced {count} times, owed {self.expected[eid]}"

    def _check_transition(self, task: ModelTask, item: dict[str, Any] | None) -> None:
        status = None if item is None else str(item["status"])
        completed_at = None if item is None else item.get("completed_at")
        if status == task.status and (status not in TERMINAL_STATUSES or completed_at == task.completed_at):
            return
        if status in TERMINAL_STATUSES:
            assert item is not None
            assert task.status == PENDING, f"{task.task_id}: {task.status} -> {status} without PENDING between"
            self._check_outcome(task, item)
            self.expected[event_id(task.task_id, status)] += 1
            self.h.tally.notes[f"outcome {status}"] += 1
            task.allowed.discard(PENDING)
        else:
            assert status in task.allowed, f"{task.task_id}: {task.status} -> {status} (allowed: {task.allowed})"
            task.allowed.discard(status)
        task.status, task.completed_at = status, completed_at

    def _check_outcome(self, task: ModelTask, item: dict[str, Any]) -> None:
        status = item["status"]
        if status == ARCHIVED:
            assert task.provider == "succeeded", f"{task.task_id} ARCHIVED while the provider says {task.provider}"
            self._check_archived_bytes(task, item)
        elif status == FAILED:
            assert task.provider in ("failed", "cancelled", None), (task, item.get("error"))
        elif status == EXPIRED:
            waited = self.now_epoch - int(item["first_seen_at"])
            assert waited >= EXPIRE_AFTER_HOURS * 3600, f"{task.task_id} EXPIRED after {waited} s"

    def _objects(self) -> dict[str, Any]:
        listing: dict[str, Any] = {"versions": {}, "latest": {}, "markers": set(), "uploads": set()}
        for page in self.h.s3.get_paginator("list_object_versions").paginate(Bucket=self.h.bucket):
            for version in page.get("Versions", []):
                listing["versions"][(version["Key"], version["VersionId"])] = version["Size"]
                if version["IsLatest"]:
                    listing["latest"][version["Key"]] = version["VersionId"]
            for marker in page.get("DeleteMarkers", []):
                listing["markers"].add(marker["Key"])
                if marker["IsLatest"]:
                    listing["latest"][marker["Key"]] = "a delete marker"
        uploads = self.h.s3.list_multipart_uploads(Bucket=self.h.bucket).get("Uploads", [])
        listing["uploads"] = {upload["Key"] for upload in uploads}
        return listing

    def _check_archived_objects(self, task: ModelTask, item: dict[str, Any], listing: dict[str, Any]) -> None:
        """Every file and the manifest the item names are in S3: that version, that size."""
        assert item.get("assets", {}).get("video"), f"{task.task_id} ARCHIVED without a video"
        assert item.get("manifest"), f"{task.task_id} ARCHIVED without a manifest"
        for role, stored in [*item["assets"].items(), ("manifest", item["manifest"])]:
            if stored:
                size = listing["versions"].get((stored["key"], stored["version_id"]))
                current = listing["latest"].get(stored["key"]) == stored["version_id"]
                assert size == int(stored["size"]) and current, (
                    f"{task.task_id}: {role} {stored['key']} is not in S3 as recorded"
                )

    def _check_archived_bytes(self, task: ModelTask, item: dict[str, Any]) -> None:
        """On becoming ARCHIVED: each file is the provider's bytes, with S3's SHA-256 checksum; the
        manifest lists them."""
        for role, stored in item["assets"].items():
            if not stored:
                continue
            name = str(stored["key"]).rpartition("/")[2]
            head = self.h.s3.head_object(
                Bucket=stored["bucket"], Key=stored["key"], VersionId=stored["version_id"], ChecksumMode="ENABLED"
            )
            assert str(head.get("ChecksumSHA256", "")).split("-")[0] == str(stored["checksum_sha256"]).split("-")[0]
            body = self.h.s3.get_object(Bucket=stored["bucket"], Key=stored["key"], VersionId=stored["version_id"])
            digest = hashlib.sha256(body["Body"].read()).hexdigest()
            served = media_sha256(f"/media/{task.task_id}/{name}", int(stored["size"]))
            assert digest == stored["sha256"] == served, f"{task.task_id}: {role} is not the provider's file"
        manifest = item["manifest"]
        document = json.loads(
            self.h.s3.get_object(Bucket=manifest["bucket"], Key=manifest["key"], VersionId=manifest["version_id"])[
                "Body"
            ].read()
        )
        listed = {role: (asset or {}).get("sha256") for role, asset in document["assets"].items()}
        recorded = {role: (asset or {}).get("sha256") for role, asset in item["assets"].items()}
        assert document["task_id"] == task.task_id and listed == recorded

    def _check_forgotten(self, task: ModelTask, item: dict[str, Any] | None, listing: dict[str, Any]) -> None:
        prefix = f"runway/{task.task_id}/"
        left = sorted(
            {key for key, _ in listing["versions"] if key.startswith(prefix)}
            | {key for key in listing["markers"] | listing["uploads"] if key.startswith(prefix)}
        )
        assert not left, f"{task.task_id} was forgotten, yet S3 holds {left}"
        if item is not None:
            assert item["status"] == FORGOTTEN, f"{task.task_id} was forgotten, yet it is {item['status']}"
            kept = {"assets", "manifest", "provider", "prompt", "prompt_en"} & set(item)
            assert not kept, f"{task.task_id} was forgotten, yet its item keeps {kept}"
            if "event" in item:
                assert json.loads(item["event"])["data"]["status"] == FORGOTTEN

    # -- the end of an interleaving -----------------------------------------------------------
    def teardown(self) -> None:
        """The runs catch up (every lease runs out, the outbox drains): every outcome announced."""
        if not self.healthy:
            return  # a step failed: Hypothesis reports that, not what followed
        self.minute += 20  # past the dispatch lease (15 min) and the run's lease (5 min)
        for _ in range(2):
            self._run(Fate())
            self._work(Fate())
        self.check()
        unannounced = sorted(str(i["task_id"]) for i in self.h.table.scan()["Items"] if "outbox" in i)
        assert not unannounced, f"still waiting to be announced after the runs caught up: {unannounced}"
        missing = {eid: n for eid, n in self.expected.items() if self.received[eid] < n}
        assert not missing, f"outcomes never announced (event id: times owed): {missing}"


@pytest.mark.parametrize("provider", ["cometapi", "runway"])
def test_every_interleaving_keeps_the_promises(
    archive: Archive, feed: FeedEmulator, provider: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """Generated interleavings of the life cycle's steps, the model checked after each (see above)."""
    LifecycleMachine.harness = Harness(archive, feed, monkeypatch, tally(request.node.name))
    run_state_machine_as_test(LifecycleMachine, settings=model_settings())


def test_a_broken_promise_is_caught(archive: Archive, feed: FeedEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine is not blind: an archive whose files vanish behind its back fails an invariant."""
    with pytest.raises(AssertionError, match="is not in S3 as recorded"):
        LifecycleMachine.harness = Harness(archive, feed, monkeypatch, Tally())  # not in the session's tally
        machine = LifecycleMachine()
        task = cast(str, machine.register(dialect="feed-2024", outputs=1, provider="succeeded"))
        machine.check()
        machine.tick(minutes=1, crash_after=None, fanout=False)
        machine.check()
        assert archive.item(task)["status"] == ARCHIVED
        boto3.client("s3").delete_object(Bucket=archive.stack.bucket_name, Key=f"runway/{task}/video.mp4")
        try:
            machine.check()
        except ClientError as exc:  # pragma: no cover - S3 answering something else is a failure too
            raise AssertionError(str(exc)) from exc


def test_a_second_forget_announces_nothing_more(
    archive: Archive, feed: FeedEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by `make soak`: a forget of a tombstone whose FORGOTTEN event is queued (or out) erases
    again and queues nothing, so the event is owed once; the model owed it once per forget."""
    LifecycleMachine.harness = Harness(archive, feed, monkeypatch, Tally())
    machine = LifecycleMachine()
    task = cast(str, machine.register(dialect="feed-2024", outputs=1, provider=None))
    for _ in range(2):
        machine.forget(task=task, allow_again=False)
        machine.check()
    machine.tick(minutes=1, crash_after=None, fanout=False)
    machine.forget(task=task, allow_again=False)  # its event is out now
    machine.check()
    machine.teardown()
    assert machine.received[event_id(task, FORGOTTEN)] == machine.expected[event_id(task, FORGOTTEN)] == 1


def test_a_run_dying_between_a_tombstones_publish_and_its_mark_announces_it_again(
    archive: Archive, feed: FeedEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by `make soak`: a tombstone's outbox mark is a conditional delete (for --allow-again),
    then the update; a run dying between the two has published, and the next run publishes the same
    event again (at least once, one id). The model allowed that only when the publish was the last write."""
    LifecycleMachine.harness = Harness(archive, feed, monkeypatch, Tally())
    machine = LifecycleMachine()
    task = cast(str, machine.register(dialect="feed-2024", outputs=1, provider=None))
    machine.forget(task=task, allow_again=False)
    machine.check()
    # Its writes: the claim, the publish, the conditional delete (refused: no --allow-again), then the mark.
    machine.tick(minutes=1, crash_after=3, fanout=False)
    machine.check()
    assert archive.item(task).get("outbox"), "the run died before the mark"
    machine.teardown()
    forgotten = event_id(task, FORGOTTEN)
    assert machine.received[forgotten] == 2 and machine.permitted[forgotten] == 1
