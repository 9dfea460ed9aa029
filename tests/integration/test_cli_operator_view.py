"""The operator's view through the CLI, as a user drives it (subprocesses against moto_server):
`status` in four states (healthy, a stuck task, a dead letter, no key yet), and the CLI's promises
to a newcomer (one line, never a traceback; nothing half-done; say what comes next)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from runway_archiver.local.deploy import deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import DynamoDBLocal, MotoServer, patched_environ
from tests.support.samples import API_KEY

from .test_cli import Cli

pytestmark = pytest.mark.slow
STACK = "status-under-test"
FRESH = "fresh-deploy"  # deployed without a key, as `sam deploy` leaves the secret
FANNED = "fanned-out"  # FanOutThreshold 0: every due task goes to the workers
DIRECT = "runway-direct"  # Provider=runway, Runway's key put, the gateway's not yet


@pytest.fixture(scope="module")
def cli(dynamodb_local: DynamoDBLocal | None) -> Iterator[Cli]:
    with (
        MotoServer(dynamodb=dynamodb_local) as moto,
        FeedEmulator(api_key=API_KEY) as feed,
        patched_environ(moto.environment()),
    ):
        session = boto3.session.Session()
        stack = deploy(session, stack_name=STACK, api_key=API_KEY, parameters=feed.stack_parameters())
        deploy(session, stack_name=FRESH, api_key=None, parameters=feed.stack_parameters())
        deploy(session, stack_name=DIRECT, api_key=API_KEY, parameters=feed.stack_parameters("runway"))
        deploy(
            session, stack_name=FANNED, api_key=API_KEY, parameters={**feed.stack_parameters(), "FanOutThreshold": "0"}
        )
        feed.add_task("st-done", "3")
        feed.add_task("st-slow", "1")
        cli = Cli(moto, feed, stack)
        done = cli("track", "st-done", "st-slow", "--stack", STACK)
        assert done.returncode == 0, done.stderr
        first = cli("run", "--stack", STACK, "--json")
        assert first.returncode == 0, first.stderr
        yield cli


def _status(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    done = cli("status", "--stack", STACK, *args)
    print(done.stdout)  # shown with -s: what `status` prints in this state
    return done


def _table(cli: Cli) -> Any:
    """The stack's table, wherever the embedded DynamoDB lives (DynamoDB Local or moto)."""
    endpoint = cli.moto.environment().get("AWS_ENDPOINT_URL_DYNAMODB", cli.moto.endpoint)
    return cli.session().resource("dynamodb", endpoint_url=endpoint).Table(cli.stack.table_name)


def _queue_url(cli: Cli, logical_id: str, stack: str = STACK) -> str:
    resources = cli.client("cloudformation").list_stack_resources(StackName=stack)["StackResourceSummaries"]
    return next(str(r["PhysicalResourceId"]) for r in resources if r["LogicalResourceId"] == logical_id)


# -- status, in four states ---------------------------------------------------------------------


def test_status_of_a_healthy_archive_says_so_and_exits_0(cli: Cli) -> None:
    done = _status(cli)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"stack            {STACK} (us-east-1)"
    assert lines[1] == "tasks            PENDING 1 · ARCHIVED 1 · FAILED 0 · EXPIRED 0 · FORGOTTEN 0"
    assert lines[2].startswith("oldest pending   st-slow, first seen ")
    assert "stuck after 120 min" in lines[2]
    assert lines[3].startswith("last run         ") and "archived=1" in lines[3]
    assert "dead letters     poller 0 · schedule 0 · work 0" in lines
    assert "API key secret   holds a value" in lines
    assert "alarms           none in ALARM" in lines
    assert any(
        line.startswith("dashboard        https://us-east-1.console.aws.amazon.com/cloudwatch/") for line in lines
    )
    assert lines[-1] == "OK: nothing needs attention"
    as_json = json.loads(cli("status", "--stack", STACK, "--json").stdout)
    assert as_json["tasks"] == {"PENDING": 1, "ARCHIVED": 1, "FAILED": 0, "EXPIRED": 0, "FORGOTTEN": 0}
    assert as_json["needs_attention"] == []
    assert as_json["last_run"]["summary"]["archived"] == 1


def test_status_counts_with_a_query_per_status_never_a_scan(cli: Cli) -> None:
    # moto_server keeps no request log; the proof is in the code path: a table without the status
    # index would fail a Query. Here: a COUNT over many items comes back right.
    table = _table(cli)
    with table.batch_writer() as batch:
        for n in range(30):
            batch.put_item(Item={"task_id": f"st-old-{n}", "status": "EXPIRED"})
    try:
        assert json.loads(cli("status", "--stack", STACK, "--json").stdout)["tasks"]["EXPIRED"] == 30
    finally:
        with table.batch_writer() as batch:
            for n in range(30):
                batch.delete_item(Key={"task_id": f"st-old-{n}"})


def test_status_names_a_stuck_task_and_exits_1(cli: Cli) -> None:
    table = _table(cli)
    first_seen = int(str(table.get_item(Key={"task_id": "st-slow"})["Item"]["first_seen_at"]))
    table.update_item(
        Key={"task_id": "st-slow"},
        UpdateExpression="SET first_seen_at = :t",
        ExpressionAttributeValues={":t": int(time.time()) - 3 * 3600},
    )
    try:
        done = _status(cli)
        assert done.returncode == 1
        assert "NEEDS ATTENTION (1):" in done.stdout
        assert (
            "  - st-slow has been pending 180 min since first seen (stuck after 120): "
            "`runway-archiver show st-slow` says what was last seen"
        ) in done.stdout.splitlines()
    finally:
        table.update_item(
            Key={"task_id": "st-slow"},
            UpdateExpression="SET first_seen_at = :t",
            ExpressionAttributeValues={":t": first_seen},
        )


def test_status_names_a_message_in_a_dead_letter_queue_and_exits_1(cli: Cli) -> None:
    sqs = cli.client("sqs")
    queue_url = _queue_url(cli, "WorkDeadLetterQueue")
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"task_id": "st-slow"}')
    try:
        done = _status(cli)
        assert done.returncode == 1
        assert "dead letters     poller 0 · schedule 0 · work 1" in done.stdout.splitlines()
        assert (
            "  - the work dead-letter queue holds 1 message(s): read one to find the cause, fix it, "
            "purge the queue (docs/operations.md)"
        ) in done.stdout.splitlines()
    finally:
        sqs.purge_queue(QueueUrl=queue_url)


def test_status_of_a_fresh_deploy_without_a_key_says_to_put_it_and_exits_1(cli: Cli) -> None:
    done = cli("status", "--stack", FRESH)
    print(done.stdout)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "API key secret   empty" in lines
    assert "tasks            PENDING 0 · ARCHIVED 0 · FAILED 0 · EXPIRED 0 · FORGOTTEN 0" in lines
    assert "last run         none found in log group /aws/lambda/" in done.stdout
    [attention] = [line for line in lines if line.startswith("  - ")]
    assert attention.startswith("  - the API key secret holds no value: nothing is archived until you put the key")
    assert "aws secretsmanager put-secret-value --secret-id arn:aws:secretsmanager:" in attention
    assert API_KEY not in done.stdout + done.stderr


def test_status_of_a_provider_runway_stack_without_the_gateway_key_says_to_put_it_and_exits_1(cli: Cli) -> None:
    done = cli("status", "--stack", DIRECT)
    print(done.stdout)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert "API key secret   holds a value" in lines
    assert "gateway key      empty" in lines
    [attention] = [line for line in lines if line.startswith("  - ")]
    assert attention == (
        "  - the gateway key secret holds no key: every task but Runway's ends FAILED until you put the "
        "CometAPI key (make api-key GATEWAY=1)"
    )
    assert "gateway key" not in cli("status", "--stack", STACK).stdout  # a cometapi stack has one secret


# -- run ------------------------------------------------------------------------------------------


def test_a_run_that_hits_a_configuration_error_says_so_and_exits_1(cli: Cli) -> None:
    cli("track", "st-keyless", "--stack", FRESH)
    done = cli("run", "--stack", FRESH, "--json")
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("runway-archiver: the run stopped on a configuration error: ")
    assert "`runway-archiver status` checks the key secret" in line
    assert "API key" in json.loads(done.stdout)["configuration_error"]
    status = cli("status", "--stack", FRESH)
    assert "  - the last run stopped on a configuration error: " in status.stdout


def test_a_second_run_says_when_the_next_poll_is_due(cli: Cli) -> None:
    cli.feed.add_task("st-next", "1")
    cli("track", "st-next", "--stack", FANNED)
    assert cli("run", "--stack", FANNED, "--no-progress").returncode == 0
    done = cli("run", "--stack", FANNED, "--no-progress")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first.endswith(": nothing was due")
    assert second.startswith("  the next pending task is due at ")
    assert "a task is polled again no sooner than 30 s after its last poll" in second


def test_run_says_what_the_workers_did_locally(cli: Cli) -> None:
    cli.feed.add_task("st-fan-1", "3")
    cli.feed.add_task("st-fan-2", "3")
    cli("track", "st-fan-1", "st-fan-2", "--stack", FANNED)
    done = cli("run", "--stack", FANNED, "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "dispatched=2" in lines[0]
    assert lines[1].startswith("  then the workers took 2 work request(s): ")
    assert "archived=2" in lines[1]
    summary = json.loads(cli("run", "--stack", FANNED, "--json").stdout)
    assert set(summary["workers"]) >= {"requests", "batches", "archived", "failed"}


def test_run_json_is_one_json_document_and_the_logs_go_to_the_log_group(cli: Cli) -> None:
    cli("track", "st-json", "--stack", STACK)
    cli.feed.add_task("st-json", "3")
    done = cli("run", "--stack", STACK, "--json", POWERTOOLS_LOG_LEVEL="DEBUG")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["archived"] == 1  # the whole stdout is the summary
    assert not [line for line in done.stderr.splitlines() if line.lstrip().startswith("{")]
    function = cli.stack.outputs["PollerFunctionName"]
    logged = cli.client("logs").filter_log_events(logGroupName=f"/aws/lambda/{function}")["events"]
    assert any('"run finished"' in event["message"] for event in logged)


def _on_a_terminal(cli: Cli, args: list[str], wait_for: str, **extra: str) -> tuple[int, str]:
    """Run the CLI with stdin and stderr on a terminal, Ctrl-C it once `wait_for` shows on stderr."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "runway_archiver.cli", *args],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=cli.environment(**extra),
        # As at a terminal: a test run in the background (`make test &`) inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509 - one async-signal-safe call
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 60
    while wait_for.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.5)
        if ready:
            seen += os.read(controller, 4096)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=60)
    while select.select([controller], [], [], 0.2)[0]:
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert process.stdout is not None
    process.stdout.close()
    return code, seen.decode(errors="replace")


def test_ctrl_c_during_a_run_is_one_line(cli: Cli) -> None:
    cli("track", "st-interrupted", "--stack", STACK)
    cli.feed.add_task("st-interrupted", "1")
    cli.feed.latency = 5.0  # a run that lasts long enough to be interrupted
    try:
        code, terminal = _on_a_terminal(cli, ["run", "--stack", STACK], "running [")
    finally:
        cli.feed.latency = 0.0
    assert code == 130
    assert "Traceback" not in terminal
    assert "runway-archiver: interrupted: tasks the run had claimed are taken up again" in terminal


def test_track_on_a_terminal_says_how_to_end_and_ctrl_c_is_one_line(cli: Cli) -> None:
    code, terminal = _on_a_terminal(cli, ["track", "--stack", STACK], "Ctrl-D to end")
    assert "reading ids from stdin, one per line, Ctrl-D to end" in terminal
    assert code == 130
    assert "Traceback" not in terminal
    assert "runway-archiver: interrupted: nothing was registered" in terminal


# -- track ------------------------------------------------------------------------------------------


def test_track_checks_every_id_before_registering_any(cli: Cli) -> None:
    done = cli("track", "st-a", "st-b", "", "st-c", "--stack", STACK)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "runway-archiver: nothing registered: 1 id(s) the archiver would refuse (''); an id starts with a "
        "letter or digit, then up to 199 letters, digits or _ . : -"
    ]
    for task_id in ("st-a", "st-b", "st-c"):
        assert cli("show", task_id, "--stack", STACK).returncode == 1  # none was written


@pytest.mark.parametrize("bad", ["has space", "-dash", "x" * 201, "semi;colon"])
def test_track_refuses_ids_the_archiver_would_refuse(cli: Cli, bad: str) -> None:
    done = cli("track", "--stack", STACK, stdin=f"st-fine\n{bad}\n")
    assert done.returncode == 2
    assert "the archiver would refuse" in done.stderr
    assert cli("show", "st-fine", "--stack", STACK).returncode == 1


def test_track_with_an_unknown_table_names_it(cli: Cli) -> None:
    done = cli("track", "st-x", "--table", "nosuch")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "runway-archiver: no table nosuch in us-east-1: check --table or $RUNWAY_ARCHIVER_TABLE"
    ]


def test_an_unknown_stack_suggests_table_only_where_table_works(cli: Cli) -> None:
    listing = cli("list", "--stack", "nosuch")
    assert listing.stderr.splitlines() == ["runway-archiver: no stack nosuch in us-east-1: pass --stack or --region"]
    tracking = cli("track", "st-y", "--stack", "nosuch")
    assert tracking.stderr.splitlines() == [
        "runway-archiver: no stack nosuch in us-east-1: pass --stack or --region, or name the table with --table"
    ]


# -- list -------------------------------------------------------------------------------------------


def test_a_negative_limit_is_a_usage_error_not_a_traceback(cli: Cli) -> None:
    done = cli("list", "--limit", "-3", "--stack", STACK)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].endswith("argument --limit: -3 is not a positive number")


def test_list_into_a_closed_pipe_is_quiet(cli: Cli) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "runway_archiver.cli", "list", "--stack", STACK],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli.environment(),
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # `| head -0`: the reader is gone before anything is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 0
    assert stderr == ""


def test_help_says_what_list_and_run_really_do(cli: Cli) -> None:
    done = cli("--help")
    text = " ".join(done.stdout.split())
    assert "with --status a Query on the status index; without, a Scan of the whole table" in text
    assert "a synchronous Lambda invoke on AWS (retried while throttled)" in text
    assert "status" in text


# -- show -------------------------------------------------------------------------------------------


def test_show_prints_times_not_epoch_seconds_and_no_none(cli: Cli) -> None:
    done = cli("show", "st-slow", "--stack", STACK)
    assert done.returncode == 0, done.stderr
    fields = dict(line.split(None, 1) for line in done.stdout.splitlines() if not line.startswith("video link"))
    assert not [line for line in done.stdout.splitlines() if line.rstrip().endswith(" None")]
    assert fields["first_seen_at"].endswith("Z") and fields["first_seen_at"][:2] == "20"
    assert fields["next_poll_at"].endswith("Z")


def test_show_refuses_a_link_longer_than_sigv4_allows(cli: Cli) -> None:
    done = cli("show", "st-done", "--stack", STACK, "--link-seconds", "604801")
    assert done.returncode == 2
    assert "604801 is over 604800 (7 days, the most SigV4 allows)" in done.stderr


def test_show_warns_that_temporary_credentials_end_the_link_sooner(cli: Cli) -> None:
    done = cli("show", "st-done", "--stack", STACK, AWS_SESSION_TOKEN="a-session-token")
    assert done.returncode == 0, done.stderr
    assert "video link (3600 s): http://127.0.0.1" in done.stdout
    assert done.stderr.splitlines() == [
        "runway-archiver: the link was signed with temporary credentials (a session token): it stops working "
        "when they expire, whatever --link-seconds says; sign with an IAM user's keys for a link that lasts 3600 s"
    ]
    without = cli("show", "st-done", "--stack", STACK, AWS_SESSION_TOKEN="")
    assert without.stderr == ""


def test_show_gives_no_link_to_a_video_in_glacier_and_says_to_restore_it(cli: Cli) -> None:
    cli.feed.add_task("st-cold", "3")
    cli("track", "st-cold", "--stack", STACK)
    cli("run", "--stack", STACK, "--no-progress")
    details = cli.json("show", "st-cold", "--stack", STACK)
    video = details["objects"]["video"]
    s3 = cli.client("s3")
    s3.copy_object(
        Bucket=video["bucket"],
        Key=video["key"],
        CopySource={"Bucket": video["bucket"], "Key": video["key"]},
        StorageClass="GLACIER",
    )
    done = cli("show", "st-cold", "--stack", STACK)
    assert done.returncode == 0, done.stderr
    assert "video link" not in done.stdout
    assert "GLACIER" in done.stdout
    assert any(
        line.startswith("runway-archiver: no link: the video is in GLACIER, where a GET answers InvalidObjectState")
        and "aws s3api restore-object" in line
        for line in done.stderr.splitlines()
    )


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)
