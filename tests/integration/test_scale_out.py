"""Scale-out through the handlers: a backlog beyond one run's share goes to the work queue and its
workers, and every task still ends archived once, announced once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import boto3

from runway_archiver.local.emulator import FeedEmulator
from tests.support.archive import Archive
from tests.support.samples import load_event

Minutes = Callable[[int], str]
SMALL_SHARE = {"FANOUT_THRESHOLD": "4"}


def _queued(archive: Archive) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=archive.work_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def test_a_backlog_beyond_the_runs_share_is_handed_to_the_workers_and_each_task_ends_once(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    task_ids = [f"backlog-{n:02d}" for n in range(13)]
    for task_id in task_ids:
        feed.add_task(task_id, "3", video_size=20_000)
    archive.register(*task_ids)

    summary = archive.run(minutes(0), env=SMALL_SHARE)

    # The run works on its share itself and hands out the rest, one message per task
    assert summary["due"] == 13
    assert summary["claimed"] == 4
    assert summary["archived"] == 4
    assert summary["dispatched"] == 9
    assert _queued(archive) == 9

    drained = archive.work()

    assert drained.records == 9
    assert drained.returned == 0
    assert {archive.item(t)["status"] for t in task_ids} == {"ARCHIVED"}
    events = archive.events()
    assert sorted(e["subject"] for e in events) == task_ids
    assert all(feed.polls(t) == 1 for t in task_ids)
    # and nothing is left for the next run
    assert archive.run(minutes(1), env=SMALL_SHARE)["due"] == 0


def test_below_the_threshold_nothing_is_handed_out(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    for task_id in ("few-1", "few-2"):
        feed.add_task(task_id, "3")
    archive.register("few-1", "few-2")

    summary = archive.run(minutes(0), env=SMALL_SHARE)

    assert summary["archived"] == 2
    assert summary["dispatched"] == 0
    assert _queued(archive) == 0


def test_tasks_handed_out_are_not_handed_out_again_while_their_message_waits(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    task_ids = [f"waiting-{n}" for n in range(7)]
    for task_id in task_ids:
        feed.add_task(task_id, "1 3")
    archive.register(*task_ids)
    archive.run(minutes(0))  # first poll of every task: running
    archive.run(minutes(1), env={"FANOUT_THRESHOLD": "2"})
    assert _queued(archive) == 5

    # The next tick, before any worker ran: the held tasks are not due, nothing is sent twice
    later = archive.run(minutes(2), env={"FANOUT_THRESHOLD": "2"})

    assert later["dispatched"] == 0
    assert later["due"] == 0
    assert _queued(archive) == 5
    archive.work()
    assert {archive.item(t)["status"] for t in task_ids} == {"ARCHIVED"}
    assert Counter(e["subject"] for e in archive.events()) == Counter(task_ids)


def test_a_message_delivered_twice_archives_and_announces_once(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    task_ids = [f"twice-{n}" for n in range(6)]
    for task_id in task_ids:
        feed.add_task(task_id, "3")
    archive.register(*task_ids)
    archive.run(minutes(0), env={"FANOUT_THRESHOLD": "1"})
    sqs = boto3.client("sqs")
    # SQS delivers at least once: copy every message
    messages = sqs.receive_message(QueueUrl=archive.work_queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)[
        "Messages"
    ]
    assert len(messages) == 5
    for message in messages:
        sqs.send_message(QueueUrl=archive.work_queue_url, MessageBody=message["Body"])

    drained = archive.work()

    assert drained.records == 10
    assert drained.returned == 0
    assert Counter(e["subject"] for e in archive.events()) == Counter(task_ids)
    assert all(feed.polls(t) == 1 for t in task_ids)
    conflicts = [line for line in archive.logs() if line.get("message") == "task held by another run or no longer due"]
    assert len(conflicts) == 5


def test_a_worker_short_of_time_returns_its_requests_and_a_later_worker_finishes(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    task_ids = [f"late-{n}" for n in range(5)]
    for task_id in task_ids:
        feed.add_task(task_id, "3")
    archive.register(*task_ids)
    archive.run(minutes(0), env={"FANOUT_THRESHOLD": "0"})

    # Below the claim cut-off from the start: nothing attempted, every record returned
    short = archive.work(remaining_seconds=30, max_batches=1, visibility_timeout=0)

    assert short.records == 5
    assert short.returned == 5
    assert {archive.item(t)["status"] for t in task_ids} == {"PENDING"}
    assert sum(feed.polls(t) for t in task_ids) == 0

    archive.work()

    assert {archive.item(t)["status"] for t in task_ids} == {"ARCHIVED"}
    assert len(archive.events()) == 5


def test_a_malformed_work_request_is_returned_every_time_so_it_ends_in_the_dead_letter_queue(
    archive: Archive, feed: FeedEmulator
) -> None:
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=archive.work_queue_url, MessageBody="not json")
    sqs.send_message(QueueUrl=archive.work_queue_url, MessageBody=json.dumps({"reason": "backlog"}))

    drained = archive.work()

    assert drained.records == 2
    assert drained.returned == 2
    redrive = json.loads(
        sqs.get_queue_attributes(QueueUrl=archive.work_queue_url, AttributeNames=["RedrivePolicy"])["Attributes"][
            "RedrivePolicy"
        ]
    )
    assert int(redrive["maxReceiveCount"]) == 5
    assert "WorkDeadLetterQueue" in redrive["deadLetterTargetArn"]


def test_the_sample_work_request_event_is_what_the_poller_sends(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    sample = json.loads(load_event("sqs-work-request.json")["Records"][0]["body"])
    feed.add_task("sample-a", "3")
    feed.add_task("sample-b", "3")
    archive.register("sample-a", "sample-b")
    archive.run(minutes(0), env={"FANOUT_THRESHOLD": "1"})

    [message] = boto3.client("sqs").receive_message(QueueUrl=archive.work_queue_url)["Messages"]

    sent = json.loads(message["Body"])
    assert set(sent) == set(sample)
    assert sent["reason"] == sample["reason"] == "backlog"
    assert sent["token"].startswith("dispatch:")
