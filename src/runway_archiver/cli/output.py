"""What every `runway-archiver` command shares: its output (text or --json), its one-line errors,
its argument types and the stack it works on.

The package's `__init__` parses and dispatches; the commands that live in modules of their own
(`archive_commands`, `browse_command`) take these from here, so none of them needs the module
that dispatches to it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from ..stack.archive import MAX_LINK_SECONDS, Archive, OperatorError, StackResources, default_stack_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import boto3

PROG = "runway-archiver"
STACK_VARIABLE = "RUNWAY_ARCHIVER_STACK"


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


def fail(message: str, code: int = 1) -> int:
    """Say what went wrong on one line of stderr; `code` is the exit status to return."""
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def positive(text: str) -> int:
    """An argument type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def link_seconds(text: str) -> int:
    """An argument type: how long a presigned link works, at most what SigV4 allows."""
    value = positive(text)
    if value > MAX_LINK_SECONDS:
        raise argparse.ArgumentTypeError(f"{value} is over {MAX_LINK_SECONDS} (7 days, the most SigV4 allows)")
    return value


def open_archive(args: argparse.Namespace, *, table: str | None = None) -> tuple[Archive, boto3.session.Session]:
    """The archive the command works on: the table named, else the stack's (--stack, $RUNWAY_ARCHIVER_STACK,
    samconfig.toml, else the default name), in the session --profile and --region describe."""
    import boto3

    session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    if table:
        return Archive(session, table), session
    stack = args.stack or os.environ.get(STACK_VARIABLE) or default_stack_name()
    try:
        resources = StackResources.find(session, stack)
    except OperatorError as exc:
        if args.command == "track":  # only `track` can do without the stack
            raise OperatorError(f"{exc}, or name the table with --table") from None
        raise
    return Archive(session, resources.table_name, resources), session
