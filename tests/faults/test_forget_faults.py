"""Faults in the middle of `forget`: an erasure cut short (S3 refusing the deletes), a run writing the
task between forget's read and its tombstone. Driven through the operator's own code (the
stack.operations functions the CLI calls) against the deployed template; the poller publishes the event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.register import register_tasks
from runway_archiver.stack.archive import Archive as Operated
from runway_archiver.stack.archive import StackResources
from runway_archiver.stack.operations import forget
from tests.support.archive import Archive

Minutes = Callable[[int], str]
AREA = "Forget"


def _operated(archive: Archive, session: boto3.session.Session | None = None) -> Operated:
    session = session or boto3.session.Session()
    resources = StackResources.find(session, archive.stack.stack_name)
    return Operated(session, resources.table_name, resources)


def _archived(archive: Archive, feed: FeedEmulator, minutes: Minutes, task_id: str) -> None:
    feed.add_task(task_id, "3")
    archive.register(task_id)
    archive.run(minutes(0))
    assert archive.item(task_id)["status"] == "ARCHIVED"
    archive.events()  # the archived event, consumed


@pytest.mark.fault(
    AREA,
    "forget --allow-again, the topic's policy refusing the operator's publish (the policy guard judges every call)",
    "forget publishes nothing itself: the next run publishes the event once, then deletes the tombstone; the id"
    " can be registered again",
)
def test_allow_again_the_run_that_publishes_the_event_deletes_the_tombstone(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    _archived(archive, feed, minutes, "gone-again")

    result = forget(_operated(archive), "gone-again", allow_again=True)

    assert result.tombstone == "deleted once its event is published"
    assert archive.item("gone-again")["status"] == "FORGOTTEN"  # until its event is out
    assert register_tasks(archive.table, ["gone-again"]).forgotten == ["gone-again"]
    archive.run(minutes(1))
    [event] = archive.events()
    assert (event["type"], event["id"]) == ("runway.task.forgotten", result.event_id)
    assert "Item" not in archive.table.get_item(Key={"task_id": "gone-again"}, ConsistentRead=True)
    assert register_tasks(archive.table, ["gone-again"]).registered == ["gone-again"]


@pytest.mark.fault(
    AREA,
    "the erasure cut short (S3 refusing the deletes after the tombstone)",
    "the tombstone keeps where the objects were, no event before the erasure is done; forget run again erases"
    " every version and queues one event naming the erased files; the next run publishes it once",
)
def test_forget_run_again_finishes_an_erasure_cut_short(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    _archived(archive, feed, minutes, "gone-halfway")
    archived = archive.item("gone-halfway")
    cut = boto3.session.Session()

    def cut_short(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "DeleteObjects")

    cut.events.register("before-call.s3.DeleteObjects", cut_short)
    with pytest.raises(ClientError):
        forget(_operated(archive, cut), "gone-halfway")
    # the tombstone is there, still naming what erasure needs; no event queued before it is done
    tombstone = archive.item("gone-halfway")
    assert tombstone["status"] == "FORGOTTEN"
    assert "prompt" not in tombstone and "provider" not in tombstone
    assert (tombstone["assets"], tombstone["manifest"]) == (archived["assets"], archived["manifest"])
    assert "outbox" not in tombstone

    result = forget(_operated(archive), "gone-halfway")

    assert result.versions_deleted == 4  # video, poster, last frame, manifest
    archive.run(minutes(1))
    [event] = archive.events()
    assert event["id"] == result.event_id
    assert event["data"]["assets"]["video"]["key"] == archived["assets"]["video"]["key"]
    assert event["data"]["manifest"]["key"] == archived["manifest"]["key"]
    done = archive.item("gone-halfway")
    assert "assets" not in done and "manifest" not in done
    assert set(done) == {"task_id", "status", "provider_name", "forgotten_at", "completed_at", "event", "announced_at"}


@pytest.mark.fault(
    AREA,
    "a run writing the task between forget's read and its tombstone",
    "nothing it wrote (prompt, provider answer, poll bookkeeping) survives the tombstone",
)
def test_nothing_a_run_wrote_after_forget_read_the_item_survives_the_tombstone(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    archive.register("gone-meanwhile")  # PENDING, never polled: the item forget reads is bare
    operator = boto3.session.Session()
    written: list[str] = []

    def a_run_polls_meanwhile(**_: Any) -> None:
        if written:
            return
        written.append("poll")  # a run's reschedule, between forget's read and its tombstone
        archive.table.update_item(
            Key={"task_id": "gone-meanwhile"},
            UpdateExpression="SET prompt = :p, provider = :a, provider_status = :s, last_polled_at = :t",
            ExpressionAttributeValues={
                ":p": "a personal prompt",
                ":a": {"prompt": "a personal prompt"},
                ":s": "RUNNING",
                ":t": minutes(0),
            },
        )

    operator.events.register("before-call.dynamodb.UpdateItem", a_run_polls_meanwhile)

    forget(_operated(archive, operator), "gone-meanwhile")

    assert written == ["poll"]
    tombstone = archive.item("gone-meanwhile")
    assert tombstone["status"] == "FORGOTTEN"
    assert not {"prompt", "provider", "provider_status", "last_polled_at"} & set(tombstone)
