"""Target 1, polling concurrency: one run over N due tasks still running at the provider.

The ideal is ceil(N / pool) x feed latency: every claim, poll and item update overlapping. The run
keeps every task itself (FANOUT_THRESHOLD above N), so this is one invocation's own speed. A second
run with an instant feed measures what the emulated AWS and the run's own CPU alone cost (a task
takes two conditional UpdateItems: claim, reschedule). With DynamoDB Local (the default) those
writes take well under a millisecond of its CPU each; with moto's DynamoDB
(RUNWAY_ARCHIVER_DYNAMODB=moto) moto_server serves them one at a time, about 11 ms each.

    python -m bench.polling [--tasks 500] [--latency 0.1] [--pool 16]
"""

from __future__ import annotations

import argparse
import math
import os
import time

from .harness import Figure, local_archive, machine_cpu_seconds, shared_dynamodb, stopwatch


def one_run(tasks: int, latency: float, pool: int) -> dict[str, float]:
    """Wall time of one run over `tasks` due tasks, each still running at the provider; and of the
    next run, which finds nothing due (what every idle minute costs); how long moto_server was busy
    serving the first run's requests; the CPU DynamoDB Local spent on them (0 without it); and the
    CPU of this process meanwhile (the run, and the feed emulator's threads)."""
    with local_archive(latency) as archive:
        task_ids = [f"poll-{n:05d}" for n in range(tasks)]
        for task_id in task_ids:
            archive.feed.add_task(task_id, "1")
        archive.register(task_ids)
        env = {"POLL_CONCURRENCY": str(pool), "FANOUT_THRESHOLD": str(tasks + 1)}
        busy_before, _ = archive.moto.busy()
        cpu_before = archive.moto.dynamodb.cpu_seconds() if archive.moto.dynamodb else 0.0
        process_before = time.process_time()
        machine_before = machine_cpu_seconds()
        with stopwatch() as elapsed:
            summary = archive.run_poller(env=env)
        process_cpu = time.process_time() - process_before
        machine_busy = (machine_cpu_seconds() - machine_before) / ((os.cpu_count() or 1) * elapsed[0])
        busy = archive.moto.busy()[0] - busy_before
        cpu = archive.moto.dynamodb.cpu_seconds() - cpu_before if archive.moto.dynamodb else 0.0
        with stopwatch() as idle:
            nothing = archive.run_poller(env=env)
    if summary["polled"] != tasks or summary["still_pending"] != tasks or nothing["due"]:
        raise RuntimeError(f"the run did not poll every task once: {summary}, then {nothing}")
    return {
        "run_seconds": elapsed[0],
        "idle_run_seconds": idle[0],
        "emulated_aws_busy_seconds": busy,
        "dynamodb_local_cpu_seconds": cpu,
        "run_process_cpu_seconds": process_cpu,
        "machine_busy_fraction": machine_busy,
    }


def measure(tasks: int = 500, latency: float = 0.1, pool: int = 16) -> tuple[list[Figure], dict[str, float]]:
    if shared_dynamodb() is not None:
        # DynamoDB Local's JVM keeps compiling for a few thousand calls of a kind (a first run here
        # spent twice the CPU of a third): one discarded run of the same kind before timing.
        one_run(tasks, 0.0, pool)
    run = one_run(tasks, latency, pool)
    wall, busy, cpu, process_cpu = (
        run[k]
        for k in ("run_seconds", "emulated_aws_busy_seconds", "dynamodb_local_cpu_seconds", "run_process_cpu_seconds")
    )
    # The same run with an instant feed: what the emulated AWS and the run itself cost (2
    # conditional writes per task). No pool size can go below it.
    floor = one_run(tasks, 0.0, pool)["run_seconds"]
    ideal = math.ceil(tasks / pool) * latency
    figures = [
        Figure(
            "1. polling concurrency",
            f"{tasks} tasks in {wall:.2f} s, pool {pool}, machine {run['machine_busy_fraction']:.0%} busy",
            f"<= 1.6 x ideal {ideal:.2f} s",
            wall / ideal,
            1.6,
        ),
        Figure(
            "1. ... against the emulation floor",
            f"instant feed {floor:.2f} s; CPU: run {process_cpu:.1f} s, DynamoDB {cpu:.1f} s, moto {busy:.1f} s",
            f"<= 1.6 x max(ideal, floor) {max(ideal, floor):.2f} s",
            wall / max(ideal, floor),
            1.6,
        ),
    ]
    details = {**run, "floor_seconds": floor, "tasks": tasks, "pool": pool}
    return figures, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--pool", type=int, default=16)
    args = parser.parse_args(argv)
    figures, _ = measure(args.tasks, args.latency, args.pool)
    for figure in figures:
        print(figure.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
