"""`make bench`: every figure of the performance issue, measured in one run, one line each.

Against the embedded AWS (DynamoDB Local and moto_server, each its own process; template.yaml
deployed) and the feed/CDN
emulator on 127.0.0.1. Prints the figure, its target, the ratio that decides it, then the cost
model computed from the measured durations. Not a test: nothing here asserts on time.

    python -m bench [--quick] [--skip-scale-out]
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from . import browse, cold_start, copy, cost, discovery, latency, polling, scale_out

if TYPE_CHECKING:
    from .harness import Figure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the harness, not the targets")
    parser.add_argument("--skip-scale-out", action="store_true", help="leave out the 2,000-task drain (minutes)")
    args = parser.parse_args(argv)
    quick = args.quick
    started = time.monotonic()
    figures: list[Figure] = []

    def report(new: list[Figure]) -> None:
        for figure in new:
            print(figure.line(), flush=True)
        figures.extend(new)

    polled, polling_details = polling.measure(tasks=100 if quick else 500)
    report(polled)
    copied, copies = copy.measure(mib=64 if quick else 1024)
    report(copied)
    found, _ = discovery.measure(archived=2000 if quick else 20_000, pending=20 if quick else 100)
    report([found])
    browsed, _ = browse.measure(small=100, large=1000 if quick else 10_000)
    report(browsed)
    imports, _ = cold_start.measure(repeat=3 if quick else 7)
    report(imports)
    archived, latency_details = latency.measure(mib=16 if quick else 64)
    report([archived])
    print(
        f"   polling schedule (s between polls): {latency_details['poll_intervals_seconds']} then "
        f"{latency_details['poll_intervals_seconds'][-1]} until the task ends; worst case after the fast "
        f"phase: {latency_details['worst_after_fast_phase_seconds']:.0f} s"
    )
    if not args.skip_scale_out:
        scaled, runs = scale_out.measure(tasks=300 if quick else 2000, latency=0.1)
        report(scaled)
        for run in runs:
            print(f"   {run}")

    stream = copies["stream"]
    usage = cost.Usage(
        seconds_per_poll=polling_details["run_seconds"] / polling_details["tasks"],
        seconds_per_mib_copied=stream["seconds"] / (64 if quick else 1024),
    )
    print(
        f"\nCost per {usage.videos:,} archived videos of {usage.video_mib:.0f} MiB ({usage.polls_per_task} polls each;"
        f" measured {usage.seconds_per_poll * 1000:.0f} ms of run per poll,"
        f" {usage.seconds_per_mib_copied * 1000:.0f} ms per MiB copied):"
    )
    rows = cost.cost_table(usage)
    for item, quantity, usd in rows:
        print(f"   {item:<30} {quantity:<48} ${usd:,.4f}")
    print(f"   {'total (first month)':<30} {'':<48} ${sum(usd for _, _, usd in rows[:-1]):,.4f}")
    print("Fixed, per month with nothing to do:")
    for item, quantity, usd in cost.fixed_monthly(polling_details["idle_run_seconds"]):
        print(f"   {item:<30} {quantity:<48} ${usd:,.4f}")

    met = sum(figure.met for figure in figures)
    print(f"\n{met} of {len(figures)} figures met their target in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
