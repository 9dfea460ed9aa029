"""A forgotten task stays forgotten: its tombstone through the callback function's handler, registration and the
poller (which publishes the forgotten event from the outbox, exactly once: the topic's policy lets only the
archiver's roles publish, so the operator never does). `forget` run again finishes an erasure cut short, and
nothing a run wrote between forget's read and its tombstone survives."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from runway_archiver.archive import Archive as Operated
from runway_archiver.archive import StackResources
from runway_archiver.archive_ops import forget
from runway_archiver.emulator import FeedEmulator
from runway_archiver.register import register_tasks
from tests.support.archive import Archive
from tests.support.samples import load_event

Minutes = Callable[[int], str]


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


def test_a_late_callback_and_a_re_registration_do_not_bring_a_forgotten_task_back(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    _archived(archive, feed, minutes, "gone-task")
    forget(_operated(archive), "gone-task")
    archive.run(minutes(1))  # publishes the forgotten event from the outbox
    [event] = archive.events()
    assert (event["type"], event["subject"]) == ("runway.task.forgotten", "gone-task")

    body = json.dumps({**load_event("feed/succeeded.json")["data"], "task_id": "gone-task"})
    reply = archive.callback(body, env={"ALLOW_CALLBACK_REGISTRATION": "true"})

    assert reply["statusCode"] == 410
    assert json.loads(reply["body"])["message"] == "the task was erased from the archive; it is not archived again"
    registration = register_tasks(archive.table, ["gone-task"])
    assert (registration.registered, registration.forgotten) == ([], ["gone-task"])
    archive.work()
    archive.run(minutes(2))
    assert archive.item("gone-task")["status"] == "FORGOTTEN"
    assert archive.events() == []  # nothing archived or announced again
    listed: dict[str, Any] = dict(
        boto3.client("s3").list_object_versions(Bucket=archive.stack.bucket_name, Prefix="runway/gone-task/")
    )
    assert not listed.get("Versions") and not listed.get("DeleteMarkers")


def test_the_forgotten_event_is_published_by_the_next_run_once_never_by_the_operator(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    _archived(archive, feed, minutes, "gone-later")

    result = forget(_operated(archive), "gone-later")

    assert (result.announced, result.tombstone) == (False, "kept")
    assert archive.events() == []
    assert archive.item("gone-later")["outbox"] == "UNANNOUNCED"
    summary = archive.run(minutes(1))
    assert summary["announced"] == 1
    [event] = archive.events()
    assert (event["type"], event["id"]) == ("runway.task.forgotten", result.event_id)
    assert "outbox" not in archive.item("gone-later")
    archive.run(minutes(2))
    assert archive.events() == []


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


def test_allow_again_on_a_tombstone_whose_event_is_out_deletes_it_at_once(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    _archived(archive, feed, minutes, "gone-twice")
    forget(_operated(archive), "gone-twice")
    archive.run(minutes(1))
    [first] = archive.events()

    again = forget(_operated(archive), "gone-twice", allow_again=True)

    assert (again.tombstone, again.announced, again.event_id) == ("deleted", True, first["id"])
    assert "Item" not in archive.table.get_item(Key={"task_id": "gone-twice"}, ConsistentRead=True)
    archive.run(minutes(2))
    assert archive.events() == []  # announced once only


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
