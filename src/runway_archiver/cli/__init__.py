"""`runway-archiver`: operate the archive from a terminal.

Works against a deployed stack (found by name: --stack, $RUNWAY_ARCHIVER_STACK, samconfig.toml's
stack_name, else "runway-archiver"; --region and --profile as for the AWS CLI) and against the
embedded one (`runway-archiver local`, then AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_DYNAMODB pointing at it).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from runway_archiver_lambda.clock import iso_utc
from runway_archiver_lambda.feed import DEFAULT_FAMILY, known_families

from ..register import UnknownProvider, checked_provider, invalid_task_ids, register_tasks
from ..stack.archive import EPOCH_ATTRIBUTES, STATUSES, OperatorError, explain, summary_line
from .archive_commands import ARCHIVE_COMMANDS, add_archive_commands
from .browse_command import add_browse_command, browse_command
from .output import PROG, STACK_VARIABLE, Output, fail, link_seconds, open_archive, positive

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence


TABLE_VARIABLE = "RUNWAY_ARCHIVER_TABLE"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", help=f"stack name (default: ${STACK_VARIABLE}, samconfig.toml, {PROG})")
    common.add_argument("--region", help="AWS region (default: the AWS CLI's)")
    common.add_argument("--profile", help="AWS named profile")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    track = commands.add_parser(
        "track",
        parents=[common],
        help="register task ids (or one per line on stdin); an id starts with a letter or digit, then up to 199 "
        "letters, digits or _ . : -",
    )
    track.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    track.add_argument(
        "--table", default=os.environ.get(TABLE_VARIABLE), help=f"the table itself (or ${TABLE_VARIABLE})"
    )
    track.add_argument(
        "--provider",
        metavar="NAME",
        help=f"the tasks' model family: {known_families()} (default: runway, the stack's default)",
    )

    listing = commands.add_parser(
        "list",
        parents=[common],
        help="tasks as a table: with --status a Query on the status index; without, a Scan of the whole table",
    )
    listing.add_argument("--status", choices=STATUSES, type=str.upper, help="only tasks with this status")
    listing.add_argument("--limit", type=positive, help="at most this many tasks")

    show = commands.add_parser("show", parents=[common], help="a task's item, its S3 objects, a link to the video")
    show.add_argument("task_id", metavar="TASK_ID")
    show.add_argument(
        "--link-seconds",
        type=link_seconds,
        default=3600,
        help="how long the video link works (default 3600, at most 604800; temporary credentials end it sooner)",
    )

    retry = commands.add_parser("retry", parents=[common], help="put FAILED or EXPIRED tasks back to PENDING")
    retry.add_argument("task_ids", nargs="+", metavar="TASK_ID")

    replay = commands.add_parser(
        "replay", parents=[common], help="have the archiver publish a task's event again (same event id)"
    )
    replay.add_argument("task_ids", nargs="+", metavar="TASK_ID")

    run = commands.add_parser(
        "run",
        parents=[common],
        help="one poller run now: a synchronous Lambda invoke on AWS (retried while throttled); in-process, then "
        "the workers, against the embedded AWS",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    commands.add_parser(
        "status",
        parents=[common],
        help="is the archive healthy? tasks per status, oldest pending, last run, dead letters, key, alarms; "
        "exit 1 if something needs attention",
    )

    local = commands.add_parser("local", help="keep the embedded AWS, the stack and a feed emulator up")
    local.add_argument("--port", type=int, default=5055, help="the emulated AWS endpoint's port (default 5055)")
    local.add_argument("--feed-port", type=int, default=5056, help="the feed emulator's port (default 5056)")
    local.add_argument("--dynamodb-port", type=int, default=5057, help="DynamoDB Local's port (default 5057)")

    add_archive_commands(commands, common)  # verify, export, forget (archive_commands.py)
    add_browse_command(commands, common)  # browse (browse_command.py)

    demo = commands.add_parser("demo", help="run the archiver locally against emulated AWS and feed (make demo)")
    demo.add_argument("--quiet", action="store_true", help="print only the final report")
    demo.add_argument(
        "--browse",
        action="store_true",
        help="then keep the demo's archive up and open it in the browser (Ctrl-C stops)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return fail(INTERRUPTED.get(args.command, "interrupted"), 130)
    except BrokenPipeError:
        # The reader left (`list | head -1`): what it read is what it wanted; nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


INTERRUPTED = {
    "run": "interrupted: tasks the run had claimed are taken up again when their lease ends (at most 5 min); "
    "on AWS the invocation itself runs on, and its summary is in the poller's log",
    "track": "interrupted: nothing was registered",
}


def _dispatch(args: argparse.Namespace) -> int:
    from ..local.engines import EmbeddedAwsError

    try:
        if args.command == "demo":
            from ..local.demo import run_demo

            return run_demo(verbose=not args.quiet, browse=args.browse)
        if args.command == "local":
            from ..local.run import serve_local

            return serve_local(args.port, args.feed_port, args.dynamodb_port)
    except EmbeddedAwsError as exc:
        return fail(str(exc))
    try:
        code = COMMANDS[args.command](args, Output(args.json))
        sys.stdout.flush()  # a closed pipe is found here, inside the handler above
        return code
    except (OperatorError, ClientError, BotoCoreError) as exc:
        return fail(explain(exc))


# -- commands ----------------------------------------------------------------------------------
def _track(args: argparse.Namespace, out: Output) -> int:
    if args.task_ids:
        task_ids = [task_id.strip() for task_id in args.task_ids]
    else:
        if sys.stdin.isatty():
            print("reading ids from stdin, one per line, Ctrl-D to end", file=sys.stderr, flush=True)
        task_ids = [line.strip() for line in sys.stdin if line.strip()]
    if not task_ids:
        return fail("no task ids given (as arguments or one per line on stdin)", 2)
    try:
        provider = checked_provider(args.provider)
    except UnknownProvider as exc:
        return fail(f"nothing registered: {exc}", 2)
    # Every id is checked before anything is written: a bad one registers none.
    refused = invalid_task_ids(task_ids)
    if refused:
        shown = ", ".join(repr(task_id) for task_id in refused[:5]) + (", ..." if len(refused) > 5 else "")
        return fail(
            f"nothing registered: {len(refused)} id(s) the archiver would refuse ({shown}); an id starts with a "
            "letter or digit, then up to 199 letters, digits or _ . : -",
            2,
        )
    archive, session = open_archive(args, table=args.table)
    try:
        result = register_tasks(archive.table, task_ids, provider)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return fail(f"no table {archive.table.name} in {session.region_name}: check --table or ${TABLE_VARIABLE}")
        raise

    def text() -> Iterator[str]:
        yield from (f"registered {task_id}" for task_id in result.registered)
        yield from (f"already known {task_id} (left as it is)" for task_id in result.already_known)
        yield from (f"forgotten {task_id} (erased; not registered again)" for task_id in result.forgotten)

    registration = {"registered": result.registered, "already_known": result.already_known}
    out.emit({**registration, **({"forgotten": result.forgotten} if result.forgotten else {})}, text)
    return 0


def _list(args: argparse.Namespace, out: Output) -> int:
    archive, _ = open_archive(args)
    rows = archive.tasks(args.status, args.limit)

    def text() -> Iterator[str]:
        if not rows:
            yield "no tasks" + (f" with status {args.status}" if args.status else "")
            return
        yield (
            f"{'TASK_ID':<38} {'STATUS':<9} {'POLLS':>5}  {'LAST SEEN':<20}  {'ANSWERED IN':<19}  "
            f"{'PROVIDER':<9} DETAIL"
        )
        for row in rows:
            when = row.get("completed_at") or row.get("last_polled_at") or ""
            polls = row.get("poll_count", 0)
            answer = " ".join(str(row[name]) for name in ("dialect", "provider_progress") if row.get(name))
            family = row.get("model_family") or DEFAULT_FAMILY
            yield (
                f"{row['task_id']!s:<38} {row['status']!s:<9} {polls!s:>5}  {when!s:<20}  {answer:<19}  "
                f"{family!s:<9} {_detail(row)}"
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
    archive, _ = open_archive(args)
    details = archive.show(args.task_id, args.link_seconds)

    def text() -> Iterator[str]:
        item = details["item"]
        hidden = {"assets", "event", "provider"}
        for name in sorted(item):
            if name in hidden or item[name] is None:
                continue
            yield f"{name:<22} {_epoch(item[name]) if name in EPOCH_ATTRIBUTES else item[name]}"
        if "model_family" not in item:
            yield f"{'model_family':<22} {DEFAULT_FAMILY} (the default: the item names none)"
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
    for warning in details["warnings"]:
        print(f"{PROG}: {warning}", file=sys.stderr)
    return 0


def _epoch(value: Any) -> str:
    try:
        return iso_utc(int(value))
    except (TypeError, ValueError, OverflowError):
        return str(value)


def _each(task_ids: list[str], action: Callable[[str], Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply `action` to every id; one that cannot be done is reported, the others still are."""
    done: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for task_id in task_ids:
        try:
            done[task_id] = action(task_id)
        except OperatorError as exc:
            refused[task_id] = str(exc)
            fail(str(exc))
    return done, refused


def _retry(args: argparse.Namespace, out: Output) -> int:
    archive, _ = open_archive(args)
    done, refused = _each(args.task_ids, archive.retry)
    out.emit({"pending_again": list(done), "refused": refused}, lambda: (f"{t} is PENDING again" for t in done))
    return 1 if refused else 0


def _replay(args: argparse.Namespace, out: Output) -> int:
    archive, _ = open_archive(args)
    done, refused = _each(args.task_ids, archive.replay)
    out.emit(
        {"queued": list(done), "refused": refused},
        lambda: (
            f"{t}: its event (same id) will be published by the next run; `{PROG} run` publishes it now" for t in done
        ),
    )
    return 1 if refused else 0


def _run(args: argparse.Namespace, out: Output) -> int:
    archive, session = open_archive(args)
    scheduled_time = iso_utc(datetime.now(UTC))
    emulated = bool(os.environ.get("AWS_ENDPOINT_URL"))
    poller = archive.function_configuration(archive.resources.poller_function)
    show_progress = not args.no_progress and sys.stderr.isatty()
    progress = _progress(poller.timeout_seconds, show_progress)
    with progress:
        if emulated:
            from ..local.run import run_in_process

            summary = run_in_process(archive, session, scheduled_time, poller)
        else:
            summary = archive.invoke_poller(scheduled_time, on_throttle=progress.say)
    where = "in-process against the emulated AWS" if emulated else f"as {archive.resources.poller_function}"
    next_due = None if summary.get("due") else archive.next_due()

    def text() -> Iterator[str]:
        yield f"run at {scheduled_time} ({where}): {summary_line(summary)}"
        workers = summary.get("workers")
        if workers and workers.get("requests"):
            yield f"  then the workers took {workers['requests']} work request(s): {summary_line(workers)}"
        elif summary.get("dispatched") and not emulated:
            yield (
                f"  {summary['dispatched']} task(s) handed to the work queue finish asynchronously in the workers: "
                f"`{PROG} list` or `{PROG} status` shows them as they end"
            )
        if not summary.get("due"):
            yield _next_due_line(next_due)

    out.emit(summary, text)
    if summary.get("configuration_error"):
        return fail(
            f"the run stopped on a configuration error: {summary['configuration_error']} "
            f"(fix it, then `{PROG} run` again; `{PROG} status` checks the key secret)"
        )
    return 0


def _next_due_line(next_due: int | None) -> str:
    if next_due is None:
        return f"  no task is pending: register one with `{PROG} track TASK_ID`"
    wait = next_due - int(time.time())
    when = iso_utc(next_due)
    if wait <= 0:
        return f"  the next pending task is due now ({when}): the next run polls it"
    return (
        f"  the next pending task is due at {when}, in {wait} s: a task is polled again no sooner than 30 s "
        "after its last poll, backing off to 10 min while the provider is still generating"
    )


def _status(args: argparse.Namespace, out: Output) -> int:
    from ..stack.status import archive_status

    archive, session = open_archive(args)
    now = datetime.now(UTC)
    found = archive_status(archive, session, now)
    out.emit(found.as_dict(), lambda: found.lines(now))
    return 1 if found.needs_attention else 0


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

    def say(self, message: str) -> None:
        """A line on stderr, on a line of its own even while the bar is drawn."""
        print(("\n" if self._enabled else "") + f"{PROG}: {message}", file=sys.stderr, flush=True)

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
    "status": _status,
    **ARCHIVE_COMMANDS,
    "browse": browse_command,
}
