"""Time to the browse page's first page: a small archive against a large one.

The stack is deployed into the embedded AWS; archived items are written as the archiver leaves
them (status ARCHIVED, completed_at, assets with bucket, key, size, digest and version), first
`small`, then up to `large`. `runway-archiver browse`'s server runs in this process on 127.0.0.1 and
the page is fetched over HTTP as a browser would (median of `repeat` loads, after three discarded
loads). Every DynamoDB call the page makes is seen through botocore's event hooks: the items its
Query reads are counted. For contrast, what a newest-first page would cost without the
recent-index: every key of the status index, then every item's completed_at (BatchGetItem), sorted.

    python -m bench.browse [--small 100] [--large 10000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from runway_archiver.browse.model import PAGE_SIZE, Browser
from runway_archiver.browse.server import BrowseServer
from runway_archiver.stack.archive import Archive, StackResources

from .discovery import DynamoCalls
from .harness import Figure, local_archive

WARM_UP = 3


def _archived(n: int, bucket: str, start: datetime) -> dict[str, Any]:
    task_id = f"done-{n:06d}"

    def asset(name: str, content_type: str, size: int) -> dict[str, Any]:
        return {
            "bucket": bucket,
            "key": f"runway/{task_id}/{name}",
            "size": size,
            "sha256": f"{n:064x}",
            "content_type": content_type,
            "version_id": f"v-{n}",
            "checksum_sha256": "AAAA",
        }

    return {
        "task_id": task_id,
        "status": "ARCHIVED",
        "completed_at": (start + timedelta(seconds=n)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "provider_name": "cometapi",
        "prompt": f"bench prompt {n}",
        "assets": {
            "video": asset("video.mp4", "video/mp4", 7_340_032),
            "poster": asset("poster.png", "image/png", 32_778),
            "last_frame": None,
        },
    }


def _load(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:  # noqa: S310 - loopback
        body = answer.read()
    elapsed = time.perf_counter() - started
    cards = body.count(b'class="card"')
    if cards != PAGE_SIZE:
        raise RuntimeError(f"the first page shows {cards} tasks, not {PAGE_SIZE}")
    return elapsed


def _first_page(resources: StackResources, repeat: int) -> tuple[float, float]:
    """Median seconds to load the first page, and items its Query pages read per load."""
    session = boto3.session.Session()
    calls = DynamoCalls(session)  # before the page's clients exist: they copy the session's hooks
    with BrowseServer(Browser.for_stack(session, resources, 3600)) as server:
        for _ in range(WARM_UP):  # discarded: the first connections, the JVM's first looks at the index
            _load(server.url)
        times = [_load(server.url) for _ in range(repeat)]
    return statistics.median(times), calls.items_read["Query"] / (repeat + WARM_UP)


def _without_the_index(archive: Archive) -> float:
    """A newest-first page from the status index alone: every key, every completed_at, sorted."""
    started = time.perf_counter()
    keys = list(archive.keys_with_status("ARCHIVED"))
    items = archive.items(keys, ("task_id", "completed_at"))
    newest = sorted(items, key=lambda item: str(item["completed_at"]), reverse=True)[:PAGE_SIZE]
    elapsed = time.perf_counter() - started
    if len(newest) != PAGE_SIZE:
        raise RuntimeError("the status index gave fewer tasks than a page")
    return elapsed


def measure(small: int = 100, large: int = 10_000, repeat: int = 7) -> tuple[list[Figure], dict[str, float]]:
    with local_archive(latency=0.0) as local:
        session = boto3.session.Session()
        resources = StackResources.find(session, local.stack.stack_name)
        table = session.resource("dynamodb").Table(local.stack.table_name)
        start = datetime(2026, 1, 1, tzinfo=UTC)

        def fill(first: int, last: int) -> None:
            with table.batch_writer() as batch:
                for n in range(first, last):
                    batch.put_item(Item=_archived(n, local.stack.bucket_name, start))

        fill(0, small)
        small_seconds, small_read = _first_page(resources, repeat)
        fill(small, large)
        large_seconds, large_read = _first_page(resources, repeat)
        sorted_seconds = _without_the_index(Archive(session, resources.table_name, resources))
    ratio = large_seconds / small_seconds
    figures = [
        Figure(
            "browse: first page, large archive",
            f"{large:,} archived: {large_seconds * 1000:.0f} ms vs {small:,}: {small_seconds * 1000:.0f} ms",
            "<= 1.5 x the small archive's",
            ratio,
            1.5,
        ),
        Figure(
            "browse: items the page's Query reads",
            f"{large_read:.0f} of {large:,} ({small_read:.0f} of {small:,})",
            f"<= 1 page ({PAGE_SIZE})",
            large_read / PAGE_SIZE,
            1.0,
        ),
    ]
    details = {
        "small_ms": small_seconds * 1000,
        "large_ms": large_seconds * 1000,
        "status_index_sort_ms": sorted_seconds * 1000,
    }
    return figures, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    figures, details = measure(args.small, args.large, args.repeat)
    for figure in figures:
        print(figure.line())
    print(
        f"   without the recent-index (every key of the status index, every completed_at, sorted): "
        f"{details['status_index_sort_ms']:.0f} ms for {args.large:,} archived"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
