"""A forgotten task stays forgotten: its tombstone through the callback function's handler, registration and the
poller (which publishes the forgotten event from the outbox, exactly once: the topic's policy lets only the
archiver's roles publish, so the operator never does), and the tombstone `--allow-again` asks that run to delete.
An erasure cut short and a run writing in between are in tests/faults/test_forget_faults.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3

from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.register import register_tasks
from runway_archiver.stack.archive import Archive as Operated
from runway_archiver.stack.archive import StackResources
from runway_archiver.stack.operations import forget
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
