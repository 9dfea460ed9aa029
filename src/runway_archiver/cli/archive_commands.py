"""The CLI's archive verbs: `verify`, `export` and `forget`; the work is in `runway_archiver.stack.operations`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..stack.archive import STATUSES, OperatorError
from ..stack.operations import (
    DELETED,
    DELETED_AFTER_ANNOUNCEMENT,
    VERIFY_RESULTS,
    archived_task_ids,
    export_rows,
    forget,
    verify_task,
    write_export,
)
from .output import PROG, fail, open_archive

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator

    from .output import Output


def add_archive_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    verify = commands.add_parser(
        "verify", parents=[common], help="check archived files against the record (exit 1 on any mismatch)"
    )
    verify.add_argument("task_ids", nargs="*", metavar="TASK_ID")
    verify.add_argument("--all", action="store_true", help="every ARCHIVED task (the status index)")
    verify.add_argument("--deep", action="store_true", help="also download each file and hash it again (SHA-256)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    export = commands.add_parser("export", parents=[common], help="the archive's inventory, one row per task, streamed")
    export.add_argument("--status", choices=STATUSES, type=str.upper, help="only tasks with this status")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl", help="JSON Lines (default) or CSV")
    export.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")

    erase = commands.add_parser(
        "forget", parents=[common], help="erase tasks: every version of their files, the manifest, the item's content"
    )
    erase.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    erase.add_argument(
        "--allow-again", action="store_true", help="keep no tombstone: the id may be registered again later"
    )


def _verify(args: argparse.Namespace, out: Output) -> int:
    if bool(args.task_ids) == bool(args.all):
        return fail("name the tasks to verify (TASK_ID ...) or pass --all, not both", 2)
    archive, _ = open_archive(args)
    task_ids: Any = archived_task_ids(archive) if args.all else args.task_ids
    total = None if args.all else len(task_ids)
    show = not args.no_progress and sys.stderr.isatty()
    checks = []
    tasks = 0
    for task_id in task_ids:
        checks.extend(verify_task(archive, task_id, deep=args.deep))
        tasks += 1
        if show:
            _draw(tasks, total)
    if show:
        print(file=sys.stderr)
    counts = {result: sum(1 for c in checks if c.result == result) for result in VERIFY_RESULTS}
    failed = counts["missing"] + counts["mismatch"]

    def text() -> Iterator[str]:
        if checks:
            yield f"{'TASK_ID':<38} {'FILE':<11} {'RESULT':<9} DETAIL"
        for check in checks:
            yield f"{check.task_id:<38} {check.role:<11} {check.result.upper():<9} {check.key or ''}  {check.detail}"
        yield (
            f"{len(checks)} check(s) over {tasks} task(s): {counts['ok']} ok, {counts['missing']} missing, "
            f"{counts['mismatch']} mismatched, {counts['skipped']} skipped, {counts['archived-cold']} archived cold"
            + (" (deep)" if args.deep else "")
        )

    out.emit({"ok": failed == 0, "counts": counts, "tasks": tasks, "checks": [c.as_dict() for c in checks]}, text)
    return 1 if failed else 0


def _draw(done: int, total: int | None) -> None:
    if total:
        filled = 30 * done // total
        print(f"\rverifying [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}", end="", file=sys.stderr, flush=True)
    else:
        print(f"\rverifying: {done} task(s)", end="", file=sys.stderr, flush=True)


def _export(args: argparse.Namespace, out: Output) -> int:
    archive, _ = open_archive(args)
    rows = export_rows(archive, args.status)
    if not args.output:
        write_export(rows, sys.stdout, args.format)
        return 0
    with Path(args.output).open("w", newline="", encoding="utf-8") as stream:
        count = write_export(rows, stream, args.format)
    print(f"exported {count} task(s) to {args.output} ({args.format})", file=sys.stderr)
    return 0


def _forget(args: argparse.Namespace, out: Output) -> int:
    archive, _ = open_archive(args)
    done: dict[str, dict[str, Any]] = {}
    refused: dict[str, str] = {}
    for task_id in args.task_ids:
        try:
            done[task_id] = forget(archive, task_id, allow_again=args.allow_again).as_dict()
        except OperatorError as exc:
            refused[task_id] = str(exc)
            fail(str(exc))

    def text() -> Iterator[str]:
        for task_id, result in done.items():
            yield f"{task_id}: erased ({result['versions_deleted']} object version(s) deleted); " + _what_next(result)

    out.emit({"forgotten": done, "refused": refused}, text)
    return 1 if refused else 0


def _what_next(result: dict[str, Any]) -> str:
    """What happens to the task's event and its tombstone after `forget`, truthfully."""
    tombstone = result["tombstone"]
    if tombstone == DELETED:
        return f"its event {result['event_id']} was published; the tombstone is deleted: the id may be registered again"
    if result["announced"]:
        event = f"its event {result['event_id']} was published"
    else:
        event = (
            f"its runway.task.forgotten event {result['event_id']} waits in the outbox: "
            f"the next run publishes it (`{PROG} run` does it now)"
        )
    if tombstone == DELETED_AFTER_ANNOUNCEMENT:
        return f"{event}, then deletes the tombstone: the id may be registered again after that"
    return f"{event}; the id stays as a tombstone"


ARCHIVE_COMMANDS: dict[str, Callable[[argparse.Namespace, Output], int]] = {
    "verify": _verify,
    "export": _export,
    "forget": _forget,
}
