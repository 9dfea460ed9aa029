"""The CLI's `browse` verb: the page itself, its server and what it reads are in `runway_archiver.browse`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..browse.model import LINK_SECONDS, Browser
from ..browse.server import serve
from .output import link_seconds, open_archive

if TYPE_CHECKING:
    import argparse

    from .output import Output


def add_browse_command(commands: Any, common: argparse.ArgumentParser) -> None:
    browse = commands.add_parser(
        "browse",
        parents=[common],
        help="a page in your browser (served on 127.0.0.1 only): the archived tasks newest first, filters, "
        "each task's video and manifest",
    )
    browse.add_argument("--port", type=int, default=0, help="the page's port on 127.0.0.1 (default: a free one)")
    browse.add_argument("--no-open", action="store_true", help="print the page's address, do not open a browser")
    browse.add_argument(
        "--link-seconds",
        type=link_seconds,
        default=LINK_SECONDS,
        help=f"how long the page's presigned media links work (default {LINK_SECONDS}; reload for fresh ones)",
    )


def browse_command(args: argparse.Namespace, out: Output) -> int:
    archive, session = open_archive(args)
    browser = Browser.for_stack(session, archive.resources, args.link_seconds)
    return serve(browser, port=args.port, open_browser=not args.no_open, as_json=out.as_json)
