"""Target 6, latency to archive: from the provider's success to the event on SNS, polling path.

A task in its fast-poll phase is polled by every scheduled run. The provider finishes just after
a run; the next run (one schedule interval later) polls, copies, records and publishes. The worst
case is therefore the interval plus that run's duration; its floor is the interval plus the copy
alone (measured here too, with the same media and the same CDN bandwidth).

    python -m bench.latency [--mib 64] [--cdn-mib-per-second 200]
"""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from runway_archiver.consumer import subscribe_queue, wait_for_event
from runway_archiver.local.engines import SILENT
from runway_archiver_lambda.config import Settings
from runway_archiver_lambda.lifecycle import poll_delay

from .harness import Figure, local_archive, stopwatch

INTERVAL_SECONDS = 60  # the template's default schedule: rate(1 minute)
MiB = 1024 * 1024


def backoff_schedule(settings: Settings) -> list[int]:
    """Seconds between polls for the polls a task gets until the interval stops growing."""
    intervals: list[int] = []
    polls = 0
    while not intervals or intervals[-1] < settings.max_poll_interval_seconds:
        intervals.append(max(INTERVAL_SECONDS, poll_delay(polls + 1, settings)))
        polls += 1
    return intervals


def measure(mib: int = 64, cdn_mib_per_second: float = 200.0) -> tuple[Figure, dict[str, Any]]:
    with local_archive(latency=0.1, media_bytes_per_second=cdn_mib_per_second * MiB) as archive:
        sqs = archive.session.client("sqs")
        events = subscribe_queue(sqs, archive.session.client("sns"), archive.stack.topic_arn, "bench-latency-events")
        archive.feed.add_task("latency", "1 3", video_size=mib * MiB, poster=False, last_frame=False)
        archive.register(["latency"])
        first = datetime.now(UTC).replace(second=0, microsecond=0)
        archive.run_poller(first)  # running: the provider finishes right after this run
        with stopwatch() as run:
            summary = archive.run_poller(first + timedelta(seconds=INTERVAL_SECONDS))
            wait_for_event(sqs, events, "latency", timeout=60.0)
        if summary["archived"] != 1:
            raise RuntimeError(f"the second run did not archive the task: {summary}")
        # The floor: the same copy alone, as the deployed function wires it.
        from runway_archiver.local.engines import patched_environ

        with patched_environ({**archive.stack.function_environment, **SILENT}):
            from runway_archiver_lambda.wiring import build_poller

            media = build_poller(os.environ).media
            with stopwatch() as copy:
                media.copy("latency-floor", "video", archive.feed.media_url("latency", "video.mp4"))
            settings = Settings.from_environ(os.environ)
    worst = INTERVAL_SECONDS + run[0]
    floor = INTERVAL_SECONDS + copy[0]
    schedule = backoff_schedule(settings)
    figure = Figure(
        "6. latency to archive (fast phase)",
        f"<= {worst:.2f} s: interval {INTERVAL_SECONDS} s + run {run[0]:.2f} s ({mib} MiB)",
        f"<= interval + copy {floor:.2f} s",
        worst / floor,
        1.05,
    )
    return figure, {
        "run_seconds": run[0],
        "copy_seconds": copy[0],
        "poll_intervals_seconds": schedule,
        "worst_after_fast_phase_seconds": settings.max_poll_interval_seconds + run[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--cdn-mib-per-second", type=float, default=200.0)
    args = parser.parse_args(argv)
    figure, details = measure(args.mib, args.cdn_mib_per_second)
    print(figure.line())
    print(f"   {details}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
