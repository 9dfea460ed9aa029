"""`runway-archiver`: the command line of the archive."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .register import register_tasks

if TYPE_CHECKING:
    from collections.abc import Sequence

TABLE_VARIABLE = "RUNWAY_ARCHIVER_TABLE"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runway-archiver", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    track = commands.add_parser("track", help="register task ids for archiving (or read them from stdin)")
    track.add_argument("task_ids", nargs="*", metavar="TASK_ID", help="task ids; none: one per line on stdin")
    track.add_argument(
        "--table",
        default=os.environ.get(TABLE_VARIABLE),
        help=f"the tasks table (default: ${TABLE_VARIABLE}; the stack output TasksTableName)",
    )
    demo = commands.add_parser("demo", help="run the archiver locally against emulated AWS and feed")
    demo.add_argument("--quiet", action="store_true", help="print only the final report")
    args = parser.parse_args(argv)

    if args.command == "demo":
        from .demo import run_demo

        return run_demo(verbose=not args.quiet)
    return _track(args.table, args.task_ids or [line for line in sys.stdin.read().splitlines() if line.strip()])


def _track(table: str | None, task_ids: list[str]) -> int:
    if not table:
        print(f"runway-archiver: no table: pass --table or set {TABLE_VARIABLE}", file=sys.stderr)
        return 2
    if not task_ids:
        print("runway-archiver: no task ids given", file=sys.stderr)
        return 2
    try:
        result = register_tasks(table, task_ids)
    except ValueError as exc:
        print(f"runway-archiver: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, NoCredentialsError) as exc:
        print(f"runway-archiver: could not register tasks in {table}: {exc}", file=sys.stderr)
        return 1
    for task_id in result.registered:
        print(f"registered {task_id}")
    for task_id in result.already_known:
        print(f"already known {task_id} (left as it is)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
