"""The operator CLI as a user drives it: `python -m runway_archiver.cli ...` in a subprocess,
against template.yaml deployed into the embedded AWS (DynamoDB Local and moto_server, each its own
process) and the feed emulator."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from runway_archiver.local.deploy import DeployedStack, deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import DynamoDBLocal, MotoServer, patched_environ, uses_dynamodb_local
from tests.support.samples import API_KEY

pytestmark = pytest.mark.slow
STACK = "archive-under-test"


@dataclass
class Cli:
    moto: MotoServer
    feed: FeedEmulator
    stack: DeployedStack

    def environment(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.moto.environment(), "RUNWAY_ARCHIVER_STACK": STACK, **extra}

    def __call__(self, *args: str, stdin: str = "", **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runway_archiver.cli", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.environment(**extra),
            timeout=120,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def session(self) -> boto3.session.Session:
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )

    def client(self, service: str) -> Any:
        endpoint = self.moto.environment().get(f"AWS_ENDPOINT_URL_{service.upper()}", self.moto.endpoint)
        return self.session().client(service, endpoint_url=endpoint)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def cli(dynamodb_local: DynamoDBLocal | None) -> Iterator[Cli]:
    with (
        MotoServer(dynamodb=dynamodb_local) as moto,
        FeedEmulator(api_key=API_KEY) as feed,
        patched_environ(moto.environment()),
    ):
        stack = deploy(
            boto3.session.Session(),
            stack_name=STACK,
            api_key=API_KEY,
            parameters=feed.stack_parameters(),
        )
        feed.add_task("cli-done", "3")
        feed.add_task("cli-refused", "2")
        feed.add_task("cli-slow", "1", dialect="task-envelope")  # answers in today's envelope
        yield Cli(moto, feed, stack)


@pytest.fixture(scope="module")
def after_one_run(cli: Cli) -> Cli:
    """Three tasks tracked (one from stdin), then one run: archived, failed, still running."""
    tracked = cli("track", "cli-done", "cli-refused")
    assert tracked.returncode == 0, tracked.stderr
    assert tracked.stdout.splitlines() == ["registered cli-done", "registered cli-refused"]
    from_stdin = cli("track", stdin="cli-slow\n\n")
    assert from_stdin.stdout.splitlines() == ["registered cli-slow"]
    summary = cli.json("run")
    assert (summary["archived"], summary["failed"], summary["still_pending"]) == (1, 1, 1)
    return cli


def test_track_leaves_known_tasks_as_they_are(after_one_run: Cli) -> None:
    again = after_one_run.json("track", "cli-done", "cli-new")
    assert again == {"registered": ["cli-new"], "already_known": ["cli-done"]}
    assert after_one_run.json("show", "cli-done")["item"]["status"] == "ARCHIVED"


def test_track_can_name_the_table_without_a_stack(after_one_run: Cli) -> None:
    table = after_one_run.stack.table_name
    done = after_one_run("track", "cli-by-table", "--table", table, RUNWAY_ARCHIVER_STACK="not-deployed")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "registered cli-by-table"


def test_run_prints_what_the_run_did(cli: Cli, after_one_run: Cli) -> None:
    done = cli("run", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "in-process against the emulated AWS" in done.stdout
    assert "still_pending=" in done.stdout


def test_list_by_status_is_a_table_of_those_tasks(after_one_run: Cli) -> None:
    done = after_one_run("list", "--status", "archived")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["TASK_ID", "STATUS", "POLLS"]
    assert [line.split()[0] for line in lines[1:-1]] == ["cli-done"]
    assert "video 262144 bytes" in lines[1]
    assert lines[-1] == "1 task(s)"
    failed = after_one_run.json("list", "--status", "FAILED")
    assert [(row["task_id"], row["error"]) for row in failed] == [
        ("cli-refused", "Generation failed: content moderation")
    ]


def test_list_without_status_lists_every_task(after_one_run: Cli) -> None:
    rows = after_one_run.json("list")
    statuses = {row["task_id"]: row["status"] for row in rows}
    assert {"cli-done": "ARCHIVED", "cli-refused": "FAILED", "cli-slow": "PENDING"}.items() <= statuses.items()
    assert len(after_one_run.json("list", "--limit", "2")) == 2


def test_show_gives_the_objects_and_a_working_link_to_the_video(after_one_run: Cli) -> None:
    details = after_one_run.json("show", "cli-done", "--link-seconds", "600")
    item, video = details["item"], details["objects"]["video"]
    assert video["key"] == "runway/cli-done/video.mp4"
    assert video["size"] == item["assets"]["video"]["size"] == 262144
    assert video["content_type"] == "video/mp4"
    with urllib.request.urlopen(details["video_link"], timeout=10) as answer:
        body = answer.read()
    assert hashlib.sha256(body).hexdigest() == item["assets"]["video"]["sha256"]
    text = after_one_run("show", "cli-done")
    assert "video link (3600 s): http://127.0.0.1" in text.stdout
    assert "status                 ARCHIVED" in text.stdout


def test_list_and_show_say_which_dialect_answered_and_the_providers_progress(after_one_run: Cli) -> None:
    pending = after_one_run("list", "--status", "PENDING")
    assert pending.returncode == 0, pending.stderr
    [header, *rows, _] = pending.stdout.splitlines()
    assert "ANSWERED IN" in header
    slow = next(row for row in rows if row.startswith("cli-slow"))
    assert "task-envelope 40%" in slow
    done = next(row for row in after_one_run.json("list") if row["task_id"] == "cli-done")
    assert (done["dialect"], done["provider_name"]) == ("feed-2024", "cometapi")
    shown = after_one_run("show", "cli-slow").stdout
    assert "dialect                task-envelope" in shown
    assert "provider_progress      40%" in shown


def test_show_of_an_unknown_task_is_one_clear_line(after_one_run: Cli) -> None:
    done = after_one_run("show", "no-such-task")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"runway-archiver: no task no-such-task in table {after_one_run.stack.table_name}"
    ]


def test_replay_publishes_the_same_event_again(after_one_run: Cli) -> None:
    sqs, sns = after_one_run.client("sqs"), after_one_run.client("sns")
    queue_url = sqs.create_queue(QueueName="replayed-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=after_one_run.stack.topic_arn, Protocol="sqs", Endpoint=queue_arn)
    stored = json.loads(after_one_run.json("show", "cli-done")["item"]["event"])

    # replay publishes nothing with the operator's own credentials (the topic's policy denies
    # every publisher but the archiver's roles): it puts the event back in the outbox
    replayed = after_one_run.json("replay", "cli-done")
    assert replayed == {"queued": ["cli-done"], "refused": {}}
    assert sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []) == []
    again = after_one_run("replay", "cli-done")
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "runway-archiver: cli-done: its event is already waiting to be published; the next run publishes it"
    )

    # and the next run, as the poller's role, publishes it once
    assert after_one_run("run", "--no-progress").returncode == 0
    (message,) = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    envelope = json.loads(message["Body"])
    assert json.loads(envelope["Message"]) == stored  # same id, same body
    assert envelope["MessageAttributes"]["type"]["Value"] == "runway.task.archived"
    assert "outbox" not in after_one_run.json("show", "cli-done")["item"]


def test_replay_of_a_task_without_an_outcome_is_refused(after_one_run: Cli) -> None:
    done = after_one_run("replay", "cli-slow")
    assert done.returncode == 1
    assert done.stderr.strip() == "runway-archiver: cli-slow is PENDING: it has no event to replay yet"


def test_retry_puts_a_failed_task_back_and_the_next_run_polls_it_afresh(after_one_run: Cli) -> None:
    cli = after_one_run
    cli.feed.add_task("cli-refused", "1 3")  # this time the provider generates it
    done = cli("retry", "cli-refused")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cli-refused is PENDING again"
    item = cli.json("show", "cli-refused")["item"]
    assert item["status"] == "PENDING"
    assert not {"error", "event", "completed_at", "poll_count", "first_seen_at", "assets"} & item.keys()
    assert "retried_at" in item
    # Polled afresh: running, then (once due again) archived.
    cli.json("run")
    assert cli.json("show", "cli-refused")["item"]["status"] == "PENDING"


def test_retry_refuses_tasks_that_are_not_failed_or_expired_and_goes_on_with_the_others(after_one_run: Cli) -> None:
    done = after_one_run("retry", "cli-done", "no-such-task")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "runway-archiver: cli-done is ARCHIVED: only FAILED or EXPIRED tasks can be retried",
        f"runway-archiver: no task no-such-task in table {after_one_run.stack.table_name}",
    ]
    assert after_one_run.json("show", "cli-done")["item"]["status"] == "ARCHIVED"


def test_an_unknown_stack_is_one_clear_line(cli: Cli) -> None:
    done = cli("list", "--stack", "not-deployed")
    assert done.returncode == 1
    assert done.stderr.strip() == "runway-archiver: no stack not-deployed in us-east-1: pass --stack or --region"


def test_track_names_the_tasks_provider_and_list_show_and_status_say_it(after_one_run: Cli) -> None:
    after_one_run.feed.add_task("cli-kling", "running", family="kling")
    tracked = after_one_run("track", "--provider", "Kling", "cli-kling")
    assert tracked.returncode == 0, tracked.stderr
    assert tracked.stdout.strip() == "registered cli-kling"
    row = next(row for row in after_one_run.json("list") if row["task_id"] == "cli-kling")
    assert row["model_family"] == "kling"
    listed = after_one_run("list", "--status", "PENDING").stdout.splitlines()
    assert "PROVIDER" in listed[0]
    assert "kling" in next(line for line in listed if line.startswith("cli-kling")).split()
    assert "model_family           kling" in after_one_run("show", "cli-kling").stdout
    assert (
        "model_family           runway (the default: the item names none)" in after_one_run("show", "cli-done").stdout
    )
    status = after_one_run("status").stdout
    assert "pending by model " in status and "kling 1" in status


def test_track_refuses_an_unknown_provider_in_one_line_and_registers_nothing(cli: Cli) -> None:
    done = cli("track", "--provider", "pika", "cli-pika-1", "cli-pika-2")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "runway-archiver: nothing registered: unknown provider 'pika': known providers are kling, luma, minimax, "
        "runway, seedance, sora, veo"
    ]
    assert all(row["task_id"] not in ("cli-pika-1", "cli-pika-2") for row in cli.json("list"))


def test_track_without_ids_says_so(cli: Cli) -> None:
    done = cli("track", stdin="")
    assert done.returncode == 2
    assert done.stderr.strip() == "runway-archiver: no task ids given (as arguments or one per line on stdin)"


def test_a_bad_status_is_refused_by_the_parser(cli: Cli) -> None:
    done = cli("list", "--status", "DONE")
    assert done.returncode == 2
    assert "invalid choice: 'DONE'" in done.stderr


def test_local_keeps_an_embedded_archive_up_for_the_other_commands() -> None:
    from runway_archiver.local.engines import free_port

    port, feed_port, dynamodb_port = free_port(), free_port(), free_port()
    ports = ["--port", str(port), "--feed-port", str(feed_port), "--dynamodb-port", str(dynamodb_port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "runway_archiver.cli", "local", *ports],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        printed = []
        for line in server.stdout:
            printed.append(line)
            if line.startswith("Ctrl-C"):
                break
        assert f"export AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in "".join(printed)
        # The command it suggests works as printed (the CLI is in .venv/bin, maybe not on PATH) ...
        [suggested] = [line.split() for line in printed if "track my-first-task" in line]
        assert os.access(suggested[0], os.X_OK), suggested[0]
        # ... and it names the table the README's put-item needs.
        [table_line] = [line for line in printed if line.strip().startswith("export TABLE=")]
        table = table_line.split("=", 1)[1].split()[0]
        # A second `local` on the same port says so in one line, before touching anything.
        second = subprocess.run(
            [sys.executable, "-m", "runway_archiver.cli", "local", "--port", str(port), "--feed-port", "0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert second.stderr.splitlines() == [
            f"runway-archiver: port {port} (for the emulated AWS) is in use, maybe by another `make local`: "
            "stop that one, or pass --port with a free port"
        ]
        dynamodb = {}
        if uses_dynamodb_local():
            assert f"export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:{dynamodb_port}" in "".join(printed)
            dynamodb = {"AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{dynamodb_port}"}
        environment = {
            **os.environ,
            **dynamodb,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "RUNWAY_ARCHIVER_STACK": "runway-archiver-local",
        }

        def cli(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "runway_archiver.cli", *args],
                capture_output=True,
                text=True,
                env=environment,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        assert cli("track", "my-first-task", "--table", table).strip() == "registered my-first-task"
        assert "due=1, polled=1, still_pending=1" in cli("run")
        first = cli("list", "--status", "PENDING").splitlines()[1]
        assert first.split()[:3] == ["my-first-task", "PENDING", "1"]
        assert "task-envelope 0%" in first  # the local feed answers as CometAPI does today
        # the second stack polls the emulated Runway API
        assert "--stack runway-archiver-local-runway" in "".join(printed)
        on_runway = ("--stack", "runway-archiver-local-runway")
        assert cli("track", "owl", *on_runway).strip() == "registered owl"
        assert "due=1, polled=1, still_pending=1" in cli("run", *on_runway)
        assert "runway-task" in cli("list", *on_runway).splitlines()[1]
        # a task of another model family, on the same local stack
        assert cli("track", "--provider", "kling", "kl-local").strip() == "registered kl-local"
        assert "still_pending=1" in cli("run")
        kling = next(line for line in cli("list", "--status", "PENDING").splitlines() if line.startswith("kl-local"))
        assert " kling " in kling  # answered in the gateway's envelope, as the local feed answers today
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
