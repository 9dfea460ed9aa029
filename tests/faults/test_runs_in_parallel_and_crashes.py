"""Runs in processes of their own against moto_server: overlapping runs, and a run killed mid-copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest

from runway_archiver.local.emulator import Fault, FeedEmulator
from runway_archiver.local.engines import SILENT
from tests.support.archive import Archive

Minutes = Callable[[int], str]
REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def _start_run(archive: Archive, at: str, **settings: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        **archive.stack.function_environment,
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_DISABLED": "true",
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.run_once", at, str(archive.clock.offset(at))],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "runs",
    [
        pytest.param(
            2,
            marks=pytest.mark.fault(
                "Concurrency",
                "2 runs at once over the same 200 pending tasks",
                "every task archived exactly once (one download), exactly one event per task",
            ),
        ),
        pytest.param(
            8,
            marks=pytest.mark.fault(
                "Concurrency",
                "8 runs at once over the same 200 pending tasks",
                "every task archived exactly once (one download), exactly one event per task",
            ),
        ),
    ],
)
def test_overlapping_runs_archive_every_task_exactly_once(
    server_archive: Archive, feed: FeedEmulator, minutes: Minutes, runs: int
) -> None:
    archive = server_archive
    feed.latency = 0.01
    task_ids = [f"task-{n:03d}" for n in range(200)]
    for task_id in task_ids:
        feed.add_task(task_id, "3", video_size=16 * 1024, poster=False, last_frame=False)
    archive.register(*task_ids)

    processes = [_start_run(archive, minutes(0)) for _ in range(runs)]
    outputs = [process.communicate(timeout=300) for process in processes]

    assert [process.returncode for process in processes] == [0] * runs, [err[-2000:] for _, err in outputs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert sum(s["archived"] for s in summaries) == 200
    assert sum(s["claimed"] for s in summaries) == 200
    assert sum(s["announced"] for s in summaries) == 200
    downloads = Counter(path for method, path in feed.requests if method == "GET")
    assert len(downloads) == 200 and set(downloads.values()) == {1}
    assert all(archive.item(task_id)["status"] == "ARCHIVED" for task_id in task_ids)
    events = archive.events()
    assert sorted(e["subject"] for e in events) == task_ids


@pytest.mark.fault(
    "Concurrency",
    "4 runs and 4 workers at once over the same 200 pending tasks, runs handing out all but 25",
    "every task archived exactly once (one download), exactly one event per task; no message left",
)
def test_overlapping_runs_and_workers_archive_every_task_exactly_once(
    server_archive: Archive, feed: FeedEmulator, minutes: Minutes, tmp_path: Path
) -> None:
    archive = server_archive
    feed.latency = 0.01
    task_ids = [f"task-{n:03d}" for n in range(200)]
    for task_id in task_ids:
        feed.add_task(task_id, "3", video_size=16 * 1024, poster=False, last_frame=False)
    archive.register(*task_ids)
    worker_env = {**os.environ, **archive.stack.environments["WorkerFunction"], **SILENT}

    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.work_once",
                archive.work_queue_url,
                str(tmp_path / "stop"),
                str(archive.clock.offset(minutes(0))),
            ],
            cwd=REPO,
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    runs = [_start_run(archive, minutes(0), FANOUT_THRESHOLD="25") for _ in range(4)]
    run_outputs = [process.communicate(timeout=300) for process in runs]
    (tmp_path / "stop").touch()  # every run has handed out what it will: workers finish the queue and stop
    worker_outputs = [process.communicate(timeout=300) for process in workers]

    assert [p.returncode for p in runs + workers] == [0] * 8, [err[-2000:] for _, err in run_outputs + worker_outputs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in run_outputs]
    drained = [json.loads(out.strip().splitlines()[-1]) for out, _ in worker_outputs]
    assert sum(s["dispatched"] for s in summaries) == sum(d["records"] for d in drained) > 0
    assert sum(d["returned"] for d in drained) == 0
    downloads = Counter(path for method, path in feed.requests if method == "GET")
    assert len(downloads) == 200 and set(downloads.values()) == {1}
    assert all(archive.item(task_id)["status"] == "ARCHIVED" for task_id in task_ids)
    assert sorted(e["subject"] for e in archive.events()) == task_ids


@pytest.mark.fault(
    "Lambda",
    "the run killed (timeout) in the middle of a 64 MiB copy",
    "no object visible; the claim left behind blocks other runs until its lease runs out; then the next run "
    "archives the task; one event in all",
)
def test_a_run_killed_mid_copy_loses_nothing_and_announces_once(
    server_archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    archive = server_archive
    feed.add_task("task", "3", video_size=64 * MiB, poster=False, last_frame=False)
    feed.fail_media("/media/task/video.mp4", Fault.media(drip_seconds=0.02))
    archive.register("task")

    # When a run is killed (as Lambda kills a timed-out invocation) while the video streams
    run = _start_run(archive, minutes(0))
    deadline = time.monotonic() + 60
    while ("GET", "/media/task/video.mp4") not in feed.requests and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(4)  # some parts uploaded: a multipart upload is open
    run.kill()
    run.wait()

    # Then nothing partial is visible, and the claim holds the task
    s3 = boto3.client("s3")
    assert s3.list_objects_v2(Bucket=archive.stack.bucket_name).get("KeyCount") == 0
    item = archive.item("task")
    assert item["status"] == "PENDING"
    assert item["lease_owner"]
    assert archive.run(minutes(1))["due"] == 0  # held: not polled, not copied again

    # When the lease has run out (five minutes later), the next run finishes the task
    archive.table.update_item(
        Key={"task_id": "task"},
        UpdateExpression="SET lease_until = :past",
        ExpressionAttributeValues={":past": archive.clock.now() - 1},
    )
    summary = archive.run(minutes(6))

    assert summary["archived"] == 1
    assert archive.item("task")["status"] == "ARCHIVED"
    assert s3.head_object(Bucket=archive.stack.bucket_name, Key="runway/task/video.mp4")["ContentLength"] == 64 * MiB
    assert len(archive.events()) == 1


@pytest.mark.fault(
    "Lambda",
    "the remaining time running low during a copy",
    "the copy is abandoned in time (multipart aborted, no object); task PENDING, claim released; next run archives",
)
def test_a_copy_that_would_outlast_the_invocation_is_abandoned_cleanly(
    archive: Archive, feed: FeedEmulator, minutes: Minutes
) -> None:
    feed.add_task("task", "3", video_size=8 * MiB, poster=False, last_frame=False)
    feed.fail_media("/media/task/video.mp4", Fault.media(drip_seconds=0.05))
    archive.register("task")

    # 16 s left: claiming is allowed (cutoff 10 s), the copy gets 16 - 15 = 1 s
    first = archive.run(minutes(0), remaining_seconds=16, env={"CLAIM_CUTOFF_SECONDS": "10"})

    assert first["archive_errors"] == 1
    item = archive.item("task")
    assert item["status"] == "PENDING"
    assert "lease_owner" not in item
    s3 = boto3.client("s3")
    assert s3.list_objects_v2(Bucket=archive.stack.bucket_name).get("KeyCount") == 0
    assert s3.list_multipart_uploads(Bucket=archive.stack.bucket_name).get("Uploads", []) == []
    assert archive.run(minutes(1))["archived"] == 1
    assert len(archive.events()) == 1
