"""`make demo`: the whole archiver, locally.

DynamoDB Local (Amazon's own engine) and moto_server (each its own process, on loopback) play
AWS; template.yaml is deployed into them; the feed
emulator plays CometAPI and its CDN; a few tasks are registered (one answers in today's task
envelope, the others in the 2024 page's dialect); the poller is invoked the way the schedule would
invoke it, one scheduled minute at a time, until every task has ended (the worker consumes the work
queue after each run, as its SQS trigger would; one task finishes early and the emulated provider
calls back through a local function URL to the callback function). Then a second stack, deployed with
`Provider=runway`, archives a task through the emulated Runway API (Runway's key) and a Kling task
through the gateway (the gateway's key, its second secret), in one stack. The first stack also archives
one task of every other model family (Kling, Sora, Veo, Luma, MiniMax, Seedance), each registered
with its provider and asked on its own path. Then the report: per task its
outcome, the dialect it was answered in and its S3 objects, the events an SQS queue subscribed
to each completion topic received, and `runway-archiver status` of the first archive. The
functions' own log lines go to a file the demo names (and to the emulated CloudWatch Logs, as on
AWS), not stdout.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from runway_archiver_lambda.clock import iso_utc

from ..consumer import all_ended, receive_events, subscribe_queue
from ..register import register_tasks
from ..stack.archive import Archive, StackResources, summary_line
from .deploy import deploy
from .emulator import FeedEmulator
from .engines import QUIET, LocalLambdaContext, MotoServer, patched_environ
from .function_url import LocalFunctionUrl
from .queue import drain
from .run import FunctionOutput

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_sqs import SQSClient

    from .deploy import DeployedStack

DEMO_KEY = "demo-key-0123456789"  # the gateway's (emulated CometAPI's) key
DEMO_RUNWAY_KEY = "demo-runway-key-9876543210"  # the emulated Runway API's own key
DEMO_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo-quick-cat": ("0 1 3", {}),
    "demo-slow-dog": ("0 0 1 1 1 3", {"video_size": 3 * 1024 * 1024}),
    "demo-video-only": ("1 3", {"poster": False, "last_frame": False, "with_state": False}),
    "demo-moderated": ("0 1 2", {}),
    "demo-envelope-fox": ("0 1 3", {"dialect": "task-envelope"}),  # today's answer: the task envelope
    # Would run for half an hour; it finishes after the first run and the provider calls back.
    "demo-callback-bird": (" ".join(["1"] * 30 + ["3"]), {}),
}
CALLBACK_TASK = "demo-callback-bird"
# One task of every other model family, in the same stack: registered with `provider=` its family.
FAMILY_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo-kling-panda": ("queued running succeeded", {"family": "kling", "outputs": 2}),
    "video_demo_otter": ("queued running succeeded", {"family": "sora", "content_redirect": True}),
    "task_demo_heron": ("queued running succeeded", {"family": "veo"}),
    "demo-luma-lynx": ("queued running succeeded", {"family": "luma", "outputs": 2}),
    "demo-minimax-crane": ("queued running succeeded", {"family": "minimax"}),
    "cgt-demo-koi": ("queued running succeeded", {"family": "seedance"}),
}
# Archived by a second stack whose poller asks Runway's own API (Provider=runway) with Runway's key...
RUNWAY_TASKS: dict[str, tuple[str, dict[str, Any]]] = {"demo-runway-owl": ("0 throttled 1 3", {"outputs": 2})}
# ...and, in the same stack, a task of another family through the gateway with the gateway's key.
RUNWAY_STACK_GATEWAY_TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "demo-kling-wren": ("queued running succeeded", {"family": "kling"})
}
RUNWAY_STACK = "runway-archiver-runway-api"
MAX_RUNS = 15
LOG_FILE = Path(tempfile.gettempdir()) / "runway-archiver-demo.log"


def run_demo(*, verbose: bool = True, browse: bool = False) -> int:
    say = print if verbose else (lambda *_a, **_k: None)
    with (
        MotoServer() as moto,
        FeedEmulator(api_key=DEMO_KEY, runway_api_key=DEMO_RUNWAY_KEY) as feed,
        patched_environ({**moto.environment(), "POWERTOOLS_TRACE_DISABLED": "true"}),
    ):
        say(f"emulated AWS (moto_server) at {moto.endpoint}; feed emulator at {feed.base_url}")
        if moto.dynamodb:
            say(f"DynamoDB: {moto.dynamodb_engine} at {moto.dynamodb.endpoint}")
        every_task = {**DEMO_TASKS, **RUNWAY_TASKS, **RUNWAY_STACK_GATEWAY_TASKS, **FAMILY_TASKS}
        for task_id, (script, options) in every_task.items():
            feed.add_task(task_id, script, **options)

        session = boto3.session.Session()
        stack = deploy(
            session,
            api_key=DEMO_KEY,
            parameters=feed.stack_parameters(),  # the emulated CDN lives on loopback: allowed
        )
        say(f"deployed template.yaml as stack {stack.stack_name}: table {stack.table_name}, bucket {stack.bucket_name}")
        if stack.ignored:
            say(f"  {moto.dynamodb_engine} ignores {', '.join(sorted(stack.ignored))}")
        sqs = session.client("sqs")
        queue_url = subscribe_queue(sqs, session.client("sns"), stack.topic_arn, "demo-completion-events")

        say(_register(session.resource("dynamodb").Table(stack.table_name)))

        quiet = {**QUIET, "POWERTOOLS_LOG_LEVEL": os.environ.get("DEMO_LOG_LEVEL", "INFO")}
        logs = {name: FunctionOutput() for name in ("PollerFunction", "WorkerFunction", "IntakeFunction")}
        token = session.client("secretsmanager").get_secret_value(SecretId=stack.outputs["CallbackTokenSecretArn"])
        with patched_environ({**stack.every_environment, **quiet}):
            # The Lambdas' own entry points, configured by the deploy
            from runway_archiver_lambda.handlers import callback, poller, worker
            from runway_archiver_lambda.wiring import build_poller

            # A scheduled minute passes per run here, in about a second: the functions' wall clock
            # moves with the schedule (a run trusts its event's time only near its wall clock).
            shift = [0.0]
            poller._poller, worker._poller = build_poller(os.environ), build_poller(os.environ)
            poller._poller.wall_clock = worker._poller.wall_clock = lambda: time.time() + shift[0]
            callback_url = LocalFunctionUrl(
                callback.lambda_handler, lambda: LocalLambdaContext("runway-archiver-callback", 10)
            )
            start = datetime.now(UTC).replace(second=0, microsecond=0)
            for run in range(MAX_RUNS):
                scheduled = start + timedelta(minutes=run)
                shift[0] = scheduled.timestamp() - time.time()
                event = {"scheduled_time": iso_utc(scheduled)}
                with logs["PollerFunction"].capture(poller):
                    summary = poller.lambda_handler(event, LocalLambdaContext())
                say(f"run {run + 1} at {event['scheduled_time']}: {summary_line(summary)}")
                if run == 0:
                    with callback_url, logs["IntakeFunction"].capture(callback):
                        status, _ = feed.call_back(CALLBACK_TASK, f"{callback_url.url}?token={token['SecretString']}")
                    say(f"  the provider called back for {CALLBACK_TASK}: the callback function answered HTTP {status}")
                with logs["WorkerFunction"].capture(worker):
                    worked = drain(
                        sqs,
                        stack.outputs["WorkQueueUrl"],
                        worker.lambda_handler,
                        lambda: LocalLambdaContext("runway-archiver-worker"),
                    )
                if worked.records:
                    say(f"  worker: {worked.records} work request(s) in {worked.batches} batch(es)")
                if summary["due"] == 0 and all_ended(session.resource("dynamodb").Table(stack.table_name)):
                    break

        runway, runway_queue_url, runway_logs = _archive_through_runway(session, feed, start, quiet, say)
        _keep_logs(session, {stack.stack_name: logs, runway.stack_name: {"PollerFunction": runway_logs}})
        print(f"\nStack {stack.stack_name} (Provider=cometapi)")
        ok = _report(session, stack.table_name, stack.bucket_name, sqs, queue_url)
        print(f"\nStack {runway.stack_name} (Provider=runway)")
        ok = _report(session, runway.table_name, runway.bucket_name, sqs, runway_queue_url) and ok
        ok = _manifest_and_verify(session, stack.stack_name, "demo-quick-cat") and ok
        _status(session, stack.stack_name, browse=browse)
    return 0 if ok else 1


def _register(table: Any) -> str:
    """Register DEMO_TASKS (Runway's), then FAMILY_TASKS, each with its family as its provider; what to say of it."""
    registered = register_tasks(table, DEMO_TASKS)
    for task_id, (_, options) in FAMILY_TASKS.items():
        register_tasks(table, [task_id], provider=options["family"])
    families = ", ".join(f"{task_id} ({options['family']})" for task_id, (_, options) in FAMILY_TASKS.items())
    return (
        f"registered {len(registered.registered)} tasks: {', '.join(registered.registered)}\n"
        f"and one task of each other model family: {families}"
    )


def _archive_through_runway(
    session: boto3.session.Session,
    feed: FeedEmulator,
    start: datetime,
    quiet: dict[str, str],
    say: Callable[..., None],
) -> tuple[DeployedStack, str, FunctionOutput]:
    """A second stack, deployed with Provider=runway, archives its tasks through the emulated Runway API."""
    from runway_archiver_lambda.handlers import poller
    from runway_archiver_lambda.wiring import build_poller

    runway = deploy(
        session,
        stack_name=RUNWAY_STACK,
        api_key=DEMO_RUNWAY_KEY,  # ApiKeySecret: Runway's key
        gateway_api_key=DEMO_KEY,  # GatewayApiKeySecret: the gateway's, for every other family
        parameters=feed.stack_parameters("runway"),
    )
    say(
        f"\ndeployed a second stack {runway.stack_name} with Provider=runway: it polls Runway's own API "
        "for Runway's tasks, and the gateway (with its own key) for every other family's"
    )
    queue_url = subscribe_queue(session.client("sqs"), session.client("sns"), runway.topic_arn, "demo-runway-events")
    table = session.resource("dynamodb").Table(runway.table_name)
    register_tasks(table, RUNWAY_TASKS)
    for task_id, (_, options) in RUNWAY_STACK_GATEWAY_TASKS.items():
        register_tasks(table, [task_id], provider=options["family"])
    output = FunctionOutput()
    with patched_environ({**runway.function_environment, **quiet}), output.capture(poller):
        poller._poller = build_poller(os.environ)  # a new container, configured for the second stack
        shift = [0.0]
        poller._poller.wall_clock = lambda: time.time() + shift[0]  # moves with the schedule, as above
        for run in range(MAX_RUNS):
            scheduled = start + timedelta(minutes=run)
            shift[0] = scheduled.timestamp() - time.time()
            summary = poller.lambda_handler({"scheduled_time": iso_utc(scheduled)}, LocalLambdaContext())
            if summary["due"] == 0 and all_ended(session.resource("dynamodb").Table(runway.table_name)):
                break
        poller._poller = None
    return runway, queue_url, output


def _keep_logs(session: boto3.session.Session, stacks: dict[str, dict[str, FunctionOutput]]) -> None:
    """The functions' output into their log groups, as Lambda would have delivered it, and into LOG_FILE."""
    lines = []
    for stack_name, outputs in stacks.items():
        summaries = session.client("cloudformation").list_stack_resources(StackName=stack_name)
        physical = {
            str(r["LogicalResourceId"]): str(r.get("PhysicalResourceId")) for r in summaries["StackResourceSummaries"]
        }
        for logical_id, output in outputs.items():
            # Where Lambda would have put it: the function's LoggingConfig group, else its default one.
            configuration = session.client("lambda").get_function_configuration(FunctionName=physical[logical_id])
            group = configuration.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{physical[logical_id]}"
            output.deliver(session, group, "demo")
            lines.extend(output.lines())
    LOG_FILE.write_text("".join(f"{line}\n" for line in lines))


def _status(session: boto3.session.Session, stack_name: str, *, browse: bool = False) -> None:
    """`runway-archiver status` of the demo's archive, as a user would run it next; then where to look next
    (or, with `demo --browse`, the archive in the browser while the embedded AWS stays up)."""
    from ..stack.status import archive_status

    resources = StackResources.find(session, stack_name)
    now = datetime.now(UTC)
    print(f"\n$ runway-archiver status --stack {stack_name}")
    for line in archive_status(Archive(session, resources.table_name, resources), session, now).lines(now):
        print(line)
    print(
        f"\nThe functions' log lines are in {LOG_FILE}. Next: `.venv/bin/runway-archiver demo --browse` runs the "
        "demo again and opens its archive in your browser; `make local` keeps such an archive up, and "
        "`.venv/bin/runway-archiver track|run|list|show|status|browse` works against it (docs/operations.md)."
    )
    if browse:
        from ..browse.server import serve_stack

        serve_stack(session, stack_name)


def _manifest_and_verify(session: boto3.session.Session, stack_name: str, task_id: str) -> bool:
    """The archive on its own: one task's manifest beside its files, then `runway-archiver verify --all`."""
    from ..stack.archive import Archive, StackResources
    from ..stack.operations import archived_task_ids, verify_task

    resources = StackResources.find(session, stack_name)
    archive = Archive(session, resources.table_name, resources)
    reference = archive.get(task_id)["manifest"]
    manifest = json.loads(
        session.client("s3").get_object(Bucket=reference["bucket"], Key=reference["key"])["Body"].read()
    )
    print(f"\nThe manifest beside {task_id}'s files: s3://{reference['bucket']}/{reference['key']}")
    shown = {k: v for k, v in manifest.items() if k != "provider_answer"}
    shown["assets"] = {
        role: a and {k: a[k] for k in ("key", "size", "sha256", "version_id")} for role, a in manifest["assets"].items()
    }
    shown["provider_answer"] = (
        "{... the provider's answer as received: " + ", ".join(sorted(manifest["provider_answer"])) + "}"
    )
    print("\n".join("  " + line for line in json.dumps(shown, indent=2, sort_keys=True).splitlines()))
    checks = [check for task in archived_task_ids(archive) for check in verify_task(archive, task)]
    print(f"runway-archiver verify --all (stack {stack_name})")
    for check in checks:
        print(f"  {check.task_id:<18} {check.role:<11} {check.result.upper():<9} {check.detail}")
    failed = sum(1 for check in checks if check.failed)
    print(f"verify: {len(checks)} check(s), {failed} missing or mismatched")
    return failed == 0


def _report(session: boto3.session.Session, table_name: str, bucket: str, sqs: SQSClient, queue_url: str) -> bool:
    # The demo's report reads the whole (tiny) table; the poller itself never scans.
    scanned: list[dict[str, Any]] = session.resource("dynamodb").Table(table_name).scan(ConsistentRead=True)["Items"]
    items = sorted(scanned, key=lambda item: str(item["task_id"]))
    s3 = session.client("s3")
    print("Tasks")
    for item in items:
        print(
            f"  {item['task_id']:<18} {item['status']:<9} polls={item.get('poll_count')}"
            + f"  answered in {item.get('dialect', '?')}"
            + f"  provider {item.get('model_family', 'runway')}"
            + (f"  error: {item['error']}" if item.get("error") else "")
        )
        for role, asset in (item.get("assets") or {}).items():
            if asset:
                head = s3.head_object(Bucket=bucket, Key=asset["key"])
                print(
                    f"      {role:<10} s3://{bucket}/{asset['key']}  {int(asset['size']):>9} bytes  "
                    f"{asset['content_type']}  sha256 {str(asset['sha256'])[:12]}…  (S3 says {head['ContentLength']})"
                )
            else:
                print(f"      {role:<10} absent")
    events = sorted(receive_events(sqs, queue_url), key=lambda e: str(e["subject"]))
    print(f"Events received on the SQS queue subscribed to the topic ({len(events)})")
    for event in events:
        data = event["data"]
        print(
            f"  {event['type']:<22} subject={event['subject']:<18} id={event['id']}  "
            f"provider={data.get('provider_name')}  model={data.get('model_family')}  error={data['error']}"
        )
    ended = all(item["status"] in ("ARCHIVED", "FAILED", "EXPIRED") for item in items)
    one_event_each = sorted(e["subject"] for e in events) == sorted(str(i["task_id"]) for i in items)
    print(f"every task ended: {ended}; exactly one event per task: {one_event_each}")
    return ended and one_event_each


if __name__ == "__main__":
    raise SystemExit(run_demo())
