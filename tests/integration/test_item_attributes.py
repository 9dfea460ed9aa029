"""The item's documentation is whole: every attribute the archiver and the operator CLI write on an
item (archived, failed, pending after a failed copy, retried, forgotten, dispatched) is listed in
the tasks module's docstring, the one place that describes the item."""

from __future__ import annotations

import re
from collections.abc import Callable

import boto3

import runway_archiver_lambda.tasks
from runway_archiver.local.emulator import Fault, FeedEmulator
from runway_archiver.stack.archive import Archive as Operated
from runway_archiver.stack.archive import StackResources
from runway_archiver.stack.operations import forget
from tests.support.archive import Archive

Minutes = Callable[[int], str]


def documented_attributes() -> set[str]:
    """The names the docstring lists: lines indented four spaces that start with `name` or `a, b, c`."""
    listed: set[str] = set()
    for line in (runway_archiver_lambda.tasks.__doc__ or "").splitlines():
        found = re.match(r"^ {4}([a-z_0-9]+(?:, [a-z_0-9]+)*)(?: {2,}|$)", line)
        if found:
            listed.update(found.group(1).split(", "))
    return listed


def test_every_attribute_written_on_an_item_is_documented(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("doc-archived", "0 1 3")
    feed.add_task("doc-failed", "1 2", fail_message="Generation failed: content moderation")
    feed.add_task("doc-retried", "2", fail_message="Generation failed")
    feed.add_task("doc-forgotten", "3")
    feed.add_task("doc-copy-failed", "3")
    feed.fail_media("/media/doc-copy-failed/video.mp4", Fault(status=404, body=b"gone", content_type="text/plain"))
    feed.add_task("doc-dispatched", " ".join(["1"] * 5))
    archive.register("doc-archived", "doc-failed", "doc-retried", "doc-forgotten", "doc-copy-failed")
    for n in range(3):
        archive.run(minutes(n))
    session = boto3.session.Session()
    resources = StackResources.find(session, archive.stack.stack_name)
    operated = Operated(session, resources.table_name, resources)
    operated.retry("doc-retried")
    forget(operated, "doc-forgotten")
    # a task handed to the work queue and not yet taken: held under the dispatch token
    archive.register("doc-dispatched")
    archive.run(minutes(3), env={"FANOUT_THRESHOLD": "0"})

    items = {item["task_id"]: item for item in archive.table.scan(ConsistentRead=True)["Items"]}
    assert {items[t]["status"] for t in items} == {"ARCHIVED", "FAILED", "PENDING", "FORGOTTEN"}
    assert {"manifest", "failing_since", "retried_at", "forgotten_at", "lease_owner"} <= {
        name for item in items.values() for name in item
    }
    documented = documented_attributes()
    undocumented = {
        task_id: sorted(set(item) - documented) for task_id, item in items.items() if set(item) - documented
    }
    assert undocumented == {}
