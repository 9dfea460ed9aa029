"""`verify`, `export` and `forget` as a user runs them: the CLI in a subprocess, against template.yaml
deployed into moto_server (its own process) after real runs of the poller against the feed emulator."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runway_archiver.consumer import subscribe_queue
from runway_archiver.local.deploy import deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import DynamoDBLocal, MotoServer, patched_environ
from tests.support.samples import API_KEY

from .test_cli import STACK, Cli

pytestmark = pytest.mark.slow
MiB = 1024 * 1024
TASKS = {
    "arc-ok": {},
    "arc-large": {"video_size": 9 * MiB},  # two parts
    "arc-changed": {},
    "arc-deleted": {},
    "arc-forget": {},
    "arc-again": {},
    "arc-held": {},
}


@pytest.fixture(scope="module")
def cli(dynamodb_local: DynamoDBLocal | None) -> Iterator[Cli]:
    with (
        MotoServer(dynamodb=dynamodb_local) as moto,
        FeedEmulator(api_key=API_KEY) as feed,
        patched_environ(moto.environment()),
    ):
        stack = deploy(boto3.session.Session(), stack_name=STACK, api_key=API_KEY, parameters=feed.stack_parameters())
        for task_id, options in TASKS.items():
            feed.add_task(task_id, "3", **options)
        feed.add_task("arc-refused", "2")
        feed.add_task("arc-running", "1")
        archive = Cli(moto, feed, stack)
        tracked = archive("track", *TASKS, "arc-refused", "arc-running")
        assert tracked.returncode == 0, tracked.stderr
        summary = archive.json("run")
        assert (summary["archived"], summary["failed"], summary["still_pending"]) == (len(TASKS), 1, 1)
        yield archive


def _bucket(cli: Cli) -> str:
    return cli.stack.bucket_name


def _versions(cli: Cli, prefix: str) -> list[dict[str, Any]]:
    listed = cli.client("s3").list_object_versions(Bucket=_bucket(cli), Prefix=prefix)
    return [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]


# -- verify ------------------------------------------------------------------------------------
def test_verify_passes_for_files_as_archived(cli: Cli) -> None:
    done = cli("verify", "arc-ok", "arc-large")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["TASK_ID", "FILE", "RESULT", "DETAIL"]
    rows = [line.split()[:3] for line in lines[1:-1]]
    assert ["arc-large", "video", "OK"] in rows and ["arc-ok", "manifest", "OK"] in rows
    assert len(rows) == 8  # video, poster, last frame and manifest of each
    assert lines[-1].startswith("8 check(s) over 2 task(s): 8 ok, 0 missing, 0 mismatched")


def test_verify_deep_downloads_and_hashes_again(cli: Cli) -> None:
    report = cli.json("verify", "arc-large", "--deep")
    assert report["ok"] is True
    assert {c["detail"] for c in report["checks"] if c["role"] != "manifest"} == {"SHA-256 computed again"}
    assert [c["detail"] for c in report["checks"] if c["role"] == "manifest"] == [
        "SHA-256 computed again",
        "lists the recorded files",
    ]


def test_verify_catches_a_changed_and_a_deleted_object(cli: Cli) -> None:
    s3 = cli.client("s3")
    changed = "runway/arc-changed/video.mp4"
    s3.put_object(Bucket=_bucket(cli), Key=changed, Body=b"not the video", ContentType="video/mp4")
    s3.delete_object(Bucket=_bucket(cli), Key="runway/arc-deleted/poster.png")

    done = cli("verify", "arc-changed", "arc-deleted", "arc-ok", "--json")

    assert done.returncode == 1
    report = json.loads(done.stdout)
    failed = {(c["task_id"], c["role"]): (c["result"], c["detail"]) for c in report["checks"] if c["result"] != "ok"}
    assert set(failed) == {("arc-changed", "video"), ("arc-deleted", "poster")}
    assert failed["arc-deleted", "poster"] == ("missing", "no such object")
    result, detail = failed["arc-changed", "video"]
    assert result == "mismatch"
    assert "size 13, recorded" in detail and "a newer version replaced the archived one" in detail
    assert report["counts"] == {"ok": 10, "missing": 1, "mismatch": 1, "skipped": 0, "archived-cold": 0}
    # and as a table, with the same verdict
    text = cli("verify", "arc-deleted")
    assert text.returncode == 1
    assert "arc-deleted                            poster      MISSING   runway/arc-deleted/poster.png" in text.stdout


def test_verify_all_walks_every_archived_task_and_skips_the_others(cli: Cli) -> None:
    report = cli.json("verify", "arc-ok", "arc-refused")
    assert report["counts"]["skipped"] == 1
    assert [c["detail"] for c in report["checks"] if c["task_id"] == "arc-refused"] == [
        "FAILED: nothing archived to verify"
    ]
    everything = cli("verify", "--all", "--json")
    checked = {c["task_id"] for c in json.loads(everything.stdout)["checks"]}
    assert {"arc-ok", "arc-large"} <= checked
    assert "arc-refused" not in checked and "arc-running" not in checked


def test_verify_wants_task_ids_or_all(cli: Cli) -> None:
    done = cli("verify")
    assert done.returncode == 2
    assert done.stderr.strip() == "runway-archiver: name the tasks to verify (TASK_ID ...) or pass --all, not both"


# -- export ------------------------------------------------------------------------------------
def test_export_writes_one_json_line_per_task(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "inventory.jsonl"
    done = cli("export", "-o", str(target))
    assert done.returncode == 0, done.stderr
    rows = {row["task_id"]: row for row in map(json.loads, target.read_text().splitlines())}
    assert done.stderr.strip() == f"exported {len(rows)} task(s) to {target} (jsonl)"
    assert {"arc-ok", "arc-refused", "arc-running"} <= rows.keys()
    ok = rows["arc-ok"]
    assert (ok["status"], ok["provider_name"], ok["dialect"], ok["prompt"]) == (
        "ARCHIVED",
        "cometapi",
        "feed-2024",
        "a cat",
    )
    assert ok["manifest_key"] == "runway/arc-ok/task.json"
    assert ok["assets"]["video"]["key"] == "runway/arc-ok/video.mp4"
    assert ok["assets"]["video"]["size"] == 256 * 1024
    assert len(ok["assets"]["video"]["sha256"]) == 64
    assert ok["completed_at"]
    assert rows["arc-refused"]["error"] == "Generation failed: content moderation"


def test_export_by_status_as_csv_on_stdout(cli: Cli) -> None:
    done = cli("export", "--status", "failed", "--format", "csv")
    assert done.returncode == 0, done.stderr
    [row] = list(csv.DictReader(io.StringIO(done.stdout)))
    assert (row["task_id"], row["status"], row["video_key"]) == ("arc-refused", "FAILED", "")
    archived = list(csv.DictReader(io.StringIO(cli("export", "--status", "ARCHIVED", "--format", "csv").stdout)))
    large = next(r for r in archived if r["task_id"] == "arc-large")
    assert (large["video_key"], large["video_size"]) == ("runway/arc-large/video.mp4", str(9 * MiB))
    assert large["manifest_key"] == "runway/arc-large/task.json"


def test_export_of_thousands_of_tasks_holds_one_page_at_a_time(cli: Cli, tmp_path: Path) -> None:
    """The inventory is streamed: memory at 4,000 tasks is what it is at 800, not five times it."""
    from runway_archiver.stack.archive import Archive
    from runway_archiver.stack.operations import export_rows, write_export

    with patched_environ(cli.moto.environment()):
        session = boto3.session.Session()
        stack = deploy(session, stack_name="bulk-export", api_key=API_KEY, parameters=cli.feed.stack_parameters())
        archive = Archive(session, stack.table_name)
        table = session.resource("dynamodb").Table(stack.table_name)

        def fill(start: int, stop: int) -> None:
            with table.batch_writer() as batch:
                for n in range(start, stop):
                    batch.put_item(Item=_bulk_item(n))

        def peak_of_export(path: Path) -> tuple[int, int]:
            tracemalloc.start()
            with path.open("w") as out:
                count = write_export(export_rows(archive, "ARCHIVED"), out, "jsonl")
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            return count, peak

        fill(0, 800)
        peak_of_export(tmp_path / "warm-up.jsonl")  # botocore loads its models once per process
        small_count, small_peak = peak_of_export(tmp_path / "800.jsonl")
        fill(800, 4000)
        count, peak = peak_of_export(tmp_path / "4000.jsonl")

    assert (small_count, count) == (800, 4000)
    assert len((tmp_path / "4000.jsonl").read_text().splitlines()) == 4000
    print(f"export peak (tracemalloc): 800 tasks {small_peak / 1024:.0f} KiB, 4000 tasks {peak / 1024:.0f} KiB")
    # five times the tasks, about the same memory (one page of 100 items and its rows); a list of the
    # rows would grow with the table
    assert peak < 1.25 * small_peak, (small_peak, peak)


def _bulk_item(n: int) -> dict[str, Any]:
    task_id = f"bulk-{n:05d}"
    asset = {
        "bucket": "archive",
        "key": f"runway/{task_id}/video.mp4",
        "size": 1_000_000 + n,
        "sha256": f"{n:064x}",
        "content_type": "video/mp4",
    }
    return {
        "task_id": task_id,
        "status": "ARCHIVED",
        "provider_name": "cometapi",
        "dialect": "task-envelope",
        "prompt": f"a prompt of some length for task number {n}, " * 3,
        "completed_at": "2026-11-24T12:00:00Z",
        "assets": {"video": asset, "poster": None, "last_frame": None},
        "manifest": {"bucket": "archive", "key": f"runway/{task_id}/task.json"},
    }


# -- forget ------------------------------------------------------------------------------------
def _subscribe(cli: Cli, name: str) -> str:
    return subscribe_queue(cli.client("sqs"), cli.client("sns"), cli.stack.topic_arn, name)


def test_forget_erases_every_version_the_manifest_and_the_item(cli: Cli) -> None:
    s3 = cli.client("s3")
    # a second version of the video, and a delete marker on the poster: all of it must go
    s3.put_object(Bucket=_bucket(cli), Key="runway/arc-forget/video.mp4", Body=b"second version")
    s3.delete_object(Bucket=_bucket(cli), Key="runway/arc-forget/poster.png")
    assert len(_versions(cli, "runway/arc-forget/")) == 6
    queue_url = _subscribe(cli, "forgotten-events")

    done = cli("forget", "arc-forget")

    assert done.returncode == 0, done.stderr
    event_id = json.loads(cli.json("show", "arc-forget")["item"]["event"])["id"]
    assert done.stdout.strip() == (
        f"arc-forget: erased (6 object version(s) deleted); its runway.task.forgotten event {event_id} waits in"
        " the outbox: the next run publishes it (`runway-archiver run` does it now); the id stays as a tombstone"
    )
    assert _versions(cli, "runway/arc-forget/") == []
    # the operator publishes nothing (the topic's policy lets only the archiver's roles): the run does
    assert cli.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []) == []
    cli.json("run")
    item = cli.json("show", "arc-forget")["item"]
    assert item["status"] == "FORGOTTEN"
    assert set(item) == {"task_id", "status", "provider_name", "forgotten_at", "completed_at", "event", "announced_at"}
    [message] = cli.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    event = json.loads(message["Body"])
    assert (event["type"], event["subject"], event["data"]["status"]) == (
        "runway.task.forgotten",
        "arc-forget",
        "FORGOTTEN",
    )
    assert event["data"]["assets"]["video"]["key"] == "runway/arc-forget/video.mp4"  # what copies to erase
    assert event["data"]["manifest"]["key"] == "runway/arc-forget/task.json"
    assert event["data"]["prompt"] is None
    # a re-registration does not bring it back, and the next run leaves it alone
    again = cli("track", "arc-forget")
    assert again.stdout.strip() == "forgotten arc-forget (erased; not registered again)"
    cli.json("run")
    assert cli.json("show", "arc-forget")["item"]["status"] == "FORGOTTEN"
    assert _versions(cli, "runway/arc-forget/") == []
    # the tombstone is one status among the others for the operator's commands
    assert [row["task_id"] for row in cli.json("list", "--status", "forgotten")] == ["arc-forget"]
    replayed = cli("replay", "arc-forget")
    assert replayed.returncode == 1
    assert replayed.stderr.strip().endswith(
        "arc-forget was forgotten: its archive is erased, there is nothing to replay"
    )


def test_forget_with_allow_again_leaves_no_tombstone_after_the_next_run(cli: Cli) -> None:
    done = cli("forget", "arc-again", "--allow-again")
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(
        "the next run publishes it (`runway-archiver run` does it now), then deletes the tombstone:"
        " the id may be registered again after that"
    )
    assert _versions(cli, "runway/arc-again/") == []
    assert cli.json("show", "arc-again")["item"]["allow_again"] is True  # until its event is out
    cli.json("run")
    assert cli("show", "arc-again").returncode == 1  # no item at all
    assert cli("track", "arc-again").stdout.strip() == "registered arc-again"


def test_forget_refuses_a_task_a_run_holds(cli: Cli) -> None:
    cli.client("dynamodb").update_item(
        TableName=cli.stack.table_name,
        Key={"task_id": {"S": "arc-held"}},
        UpdateExpression="SET lease_owner = :run, lease_until = :until",
        ExpressionAttributeValues={":run": {"S": "run-in-progress"}, ":until": {"N": "4000000000"}},
    )

    done = cli("forget", "arc-held")

    assert done.returncode == 1
    assert done.stderr.strip() == (
        "runway-archiver: arc-held is held by a run until 2096-10-02T07:06:40Z; try again after it ends"
    )
    assert len(_versions(cli, "runway/arc-held/")) == 4  # untouched
    assert cli.json("show", "arc-held")["item"]["status"] == "ARCHIVED"
