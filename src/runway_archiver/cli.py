"""`runway-archiver`: operate the archive from a terminal.

Works against a deployed stack (found by name: --stack, $RUNWAY_ARCHIVER_STACK, samconfig.toml's
stack_name, else "runway-archiver"; --region and --profile as for the AWS CLI) and against the
embedded one (`runway-archiver local`, then AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_DYNAMODB pointing at it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from .archive_cli import ARCHIVE_COMMANDS, add_archive_commands
from .operator import STATUSES, Archive, OperatorError, StackResources, default_stack_name, summary_line
from .register import register_tasks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import boto3

TABLE_VARIABLE = "RUNWAY_ARCHIVER_TABLE"
STACK_VARIABLE = "RUNWAY_ARCHIVER_STACK"
PROG = "runway-archiver"


class Output:
    """Where results go: readable text, or one JSON document per command (--json)."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def emit(self, data: Any, text: Callable[[], Iterator[str]]) -> None:
        if self.as_json:
            print(json.dumps(data, indent=2, sort_keys=True, default=str))
        else:
            for line in text():
                print(line)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", help=f"stack name (default: ${STACK_VARIABLE}, samconfig.toml, {PROG})")
    common.add_argument("--region", help="AWS region (default: the AWS CLI's)")
    common.add_argument("--profile", help="AWS named profile")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    track = commands.add_parser("track", parents=[common], help="register task ids (or one per line on stdin)")
    track.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    track.add_argument(
        "--table", default=os.environ.get(TABLE_VARIABLE), help=f"the table itself (or ${TABLE_VARIABLE})"
    )

    listing = commands.add_parser("list", parents=[common], help="tasks as a table (a Query on the status index)")
    listing.add_argument("--status", choices=STATUSES, type=str.upper, help="only tasks with this status")
    listing.add_argument("--limit", type=int, help="at most this many tasks")

    show = commands.add_parser("show", parents=[common], help="a task's item, its S3 objects, a link to the video")
    show.add_argument("task_id", metavar="TASK_ID")
    show.add_argument("--link-seconds", type=int, default=3600, help="how long the video link works (default 3600)")

    retry = commands.add_parser("retry", parents=[common], help="put FAILED or EXPIRED tasks back to PENDING")
    retry.add_argument("task_ids", nargs="+", metavar="TASK_ID")

    replay = commands.add_parser(
        "replay", parents=[common], help="have the archiver publish a task's event again (same event id)"
    )
    replay.add_argument("task_ids", nargs="+", metavar="TASK_ID")

    run = commands.add_parser("run", parents=[common], help="one poller run now (in-process against emulated AWS)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    local = commands.add_parser("local", help="keep the embedded AWS, the stack and a feed emulator up")
    local.add_argument("--port", type=int, default=5055, help="the emulated AWS endpoint's port (default 5055)")
    local.add_argument("--feed-port", type=int, default=5056, help="the feed emulator's port (default 5056)")
    local.add_argument("--dynamodb-port", type=int, default=5057, help="DynamoDB Local's port (default 5057)")

    add_archive_commands(commands, common)  # verify, export, forget (archive_cli.py)

    demo = commands.add_parser("demo", help="run the archiver locally against emulated AWS and feed (make demo)")
    demo.add_argument("--quiet", action="store_true", help="print only the final report")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .local_aws import EmbeddedAwsError

    try:
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(verbose=not args.quiet)
        if args.command == "local":
            from .local_run import serve_local

            return serve_local(args.port, args.feed_port, args.dynamodb_port)
    except EmbeddedAwsError as exc:
        return _fail(str(exc))
    try:
        return COMMANDS[args.command](args, Output(args.json))
    except (OperatorError, ClientError, BotoCoreError) as exc:
        return _fail(_explain(exc))


def _explain(exc: Exception) -> str:
    """One line a user can act on."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials: configure a profile (--profile) or the AWS_* variables"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_DEFAULT_REGION"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{exc.operation_name}: {error.get('Code')}: {error.get('Message')}"
    return str(exc)


def _fail(message: str, code: int = 1) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _session(args: argparse.Namespace) -> boto3.session.Session:
    import boto3

    return boto3.session.Session(profile_name=args.profile, region_name=args.region)


def _archive(args: argparse.Namespace, *, table: str | None = None) -> tuple[Archive, boto3.session.Session]:
    session = _session(args)
    if table:
        return Archive(session, table), session
    stack = args.stack or os.environ.get(STACK_VARIABLE) or default_stack_name()
    resources = StackResources.find(session, stack)
    return Archive(session, resources.table_name, resources), session


# -- commands ----------------------------------------------------------------------------------
def _track(args: argparse.Namespace, out: Output) -> int:
    task_ids = args.task_ids or [line.strip() for line in sys.stdin if line.strip()]
    if not task_ids:
        return _fail("no task ids given (as arguments or one per line on stdin)", 2)
    archive, _ = _archive(args, table=args.table)
    try:
        result = register_tasks(archive.table, task_ids)
    except (TypeError, ValueError) as exc:
        return _fail(str(exc), 2)

    def text() -> Iterator[str]:
        yield from (f"registered {task_id}" for task_id in result.registered)
        yield from (f"already known {task_id} (left as it is)" for task_id in result.already_known)
        yield from (f"forgotten {task_id} (erased; not registered again)" for task_id in result.forgotten)

    registration = {"registered": result.registered, "already_known": result.already_known}
    out.emit({**registration, **({"forgotten": result.forgotten} if result.forgotten else {})}, text)
    return 0


def _list(args: argparse.Namespace, out: Output) -> int:
    archive, _ = _archive(args)
    rows = archive.tasks(args.status, args.limit)

    def text() -> Iterator[str]:
        if not rows:
            yield "no tasks" + (f" with status {args.status}" if args.status else "")
            return
        yield f"{'TASK_ID':<38} {'STATUS':<9} {'POLLS':>5}  {'LAST SEEN':<20}  {'ANSWERED IN':<19}  DETAIL"
        for row in rows:
            when = row.get("completed_at") or row.get("last_polled_at") or ""
            polls = row.get("poll_count", 0)
            answer = " ".join(str(row[name]) for name in ("dialect", "provider_progress") if row.get(name))
            yield (
                f"{row['task_id']!s:<38} {row['status']!s:<9} {polls!s:>5}  {when!s:<20}  {answer:<19}  {_detail(row)}"
            )
        yield f"{len(rows)} task(s)"

    out.emit(rows, text)
    return 0


def _detail(row: dict[str, Any]) -> str:
    if row.get("error") or row.get("last_error"):
        return str(row.get("error") or row.get("last_error"))[:60]
    video = (row.get("assets") or {}).get("video")
    return f"video {video['size']} bytes" if video else ""


def _show(args: argparse.Namespace, out: Output) -> int:
    archive, _ = _archive(args)
    details = archive.show(args.task_id, args.link_seconds)

    def text() -> Iterator[str]:
        item = details["item"]
        hidden = {"assets", "event", "provider"}
        yield from (f"{name:<22} {item[name]}" for name in sorted(item) if name not in hidden)
        for role, found in details["objects"].items():
            if found is None:
                yield f"{role:<22} absent (the provider gave none)"
            elif "missing" in found:
                yield f"{role:<22} s3://{found['bucket']}/{found['key']}  MISSING: {found['missing']}"
            else:
                yield (
                    f"{role:<22} s3://{found['bucket']}/{found['key']}  {found['size']} bytes  "
                    f"{found['content_type']}  {found['storage_class']}"
                )
        if details["video_link"]:
            yield f"video link ({details['video_link_seconds']} s): {details['video_link']}"

    out.emit(details, text)
    return 0


def _each(task_ids: list[str], action: Callable[[str], Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply `action` to every id; one that cannot be done is reported, the others still are."""
    done: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for task_id in task_ids:
        try:
            done[task_id] = action(task_id)
        except OperatorError as exc:
            refused[task_id] = str(exc)
            _fail(str(exc))
    return done, refused


def _retry(args: argparse.Namespace, out: Output) -> int:
    archive, _ = _archive(args)
    done, refused = _each(args.task_ids, archive.retry)
    out.emit({"pending_again": list(done), "refused": refused}, lambda: (f"{t} is PENDING again" for t in done))
    return 1 if refused else 0


def _replay(args: argparse.Namespace, out: Output) -> int:
    archive, _ = _archive(args)
    done, refused = _each(args.task_ids, archive.replay)
    out.emit(
        {"queued": list(done), "refused": refused},
        lambda: (
            f"{t}: its event (same id) will be published by the next run; `{PROG} run` publishes it now" for t in done
        ),
    )
    return 1 if refused else 0


def _run(args: argparse.Namespace, out: Output) -> int:
    archive, session = _archive(args)
    scheduled_time = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    emulated = bool(os.environ.get("AWS_ENDPOINT_URL"))
    poller = archive.function_configuration(archive.resources.poller_function)
    show_progress = not args.no_progress and sys.stderr.isatty()
    with _progress(poller.timeout_seconds, show_progress):
        if emulated:
            from .local_run import run_in_process

            summary = run_in_process(archive, session, scheduled_time, poller)
        else:
            summary = archive.invoke_poller(scheduled_time)
    where = "in-process against the emulated AWS" if emulated else f"as {archive.resources.poller_function}"
    out.emit(summary, lambda: iter([f"run at {scheduled_time} ({where}): {summary_line(summary)}"]))
    return 0


class _progress:
    """A bar of elapsed time against the function's timeout, on stderr, while a run is going."""

    def __init__(self, timeout_seconds: int, enabled: bool) -> None:
        self._timeout = max(timeout_seconds, 1)
        self._enabled = enabled
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._draw, daemon=True)

    def __enter__(self) -> None:
        if self._enabled:
            self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._enabled:
            self._thread.join()
            print(file=sys.stderr)

    def _draw(self) -> None:
        start = time.monotonic()
        while not self._done.wait(0.25):
            elapsed = time.monotonic() - start
            filled = min(30, int(30 * elapsed / self._timeout))
            print(
                f"\rrunning [{'#' * filled}{'.' * (30 - filled)}] {elapsed:5.0f} s / {self._timeout} s",
                end="",
                file=sys.stderr,
                flush=True,
            )


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "track": _track,
    "list": _list,
    "show": _show,
    "retry": _retry,
    "replay": _replay,
    "run": _run,
    **ARCHIVE_COMMANDS,
}


if __name__ == "__main__":
    sys.exit(main())
