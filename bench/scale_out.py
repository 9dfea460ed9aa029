"""Scale-out: 2,000 due tasks drained from the work queue by 1, 2 and 4 worker instances.

Each worker instance is a process of its own running the deployed worker's code, fed from the
SQS work queue as its event source would (batches of 10, partial batch failures), against
the embedded AWS (DynamoDB Local for the table, moto_server for SQS and the rest) and the feed
emulator. For each worker count a fresh stack gets the tasks (still
running at the provider: one poll and one reschedule each) and one work request per task, then
the workers are started together and timed until the queue is empty.

moto_server serves one request at a time: a serial section that real SQS does not have, and
which bounds every worker count alike (with moto's DynamoDB, RUNWAY_ARCHIVER_DYNAMODB=moto, it
also serves the two conditional writes per task, about 11 ms each). The report shows that bound
next to the figures.

    python -m bench.scale_out [--tasks 2000] [--latency 0.1] [--workers 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict
from typing import Any

from .harness import Figure, child_environment, local_archive, machine_cpu_seconds, shared_dynamodb, stopwatch

CORES = os.cpu_count() or 1


def _children_cpu() -> float:
    """CPU seconds of the child processes waited for so far (the workers, once they have ended)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def worker_process(queue_url: str) -> None:
    """One worker instance: drain until a receive comes back empty, print what it did."""
    import boto3

    from runway_archiver.local.engines import LocalLambdaContext
    from runway_archiver.local.queue import drain
    from runway_archiver_lambda.handlers import worker

    drained = drain(
        boto3.client("sqs"), queue_url, worker.lambda_handler, lambda: LocalLambdaContext("runway-archiver-worker")
    )
    print(json.dumps(asdict(drained)))


def drain_with(workers: int, tasks: int, latency: float) -> dict[str, Any]:
    from runway_archiver_lambda.workqueue import WorkQueue, WorkRequest

    with local_archive(latency) as archive:
        task_ids = [f"scale-{n:05d}" for n in range(tasks)]
        for task_id in task_ids:
            archive.feed.add_task(task_id, "1")
        archive.register(task_ids)
        queue_url = archive.stack.outputs["WorkQueueUrl"]
        refused = WorkQueue(archive.session.client("sqs"), queue_url).send([WorkRequest(t) for t in task_ids])
        if refused:
            raise RuntimeError(f"{len(refused)} work requests were refused")
        env = child_environment(archive.stack.environments["WorkerFunction"])
        command = [sys.executable, "-m", "bench.scale_out", "--worker-of", queue_url]
        busy_before, _ = archive.moto.busy()
        cpu_before = archive.moto.dynamodb.cpu_seconds() if archive.moto.dynamodb else 0.0
        children_before = _children_cpu()
        own_before = time.process_time()  # the feed emulator's threads live in this process
        machine_before = machine_cpu_seconds()
        with stopwatch() as elapsed:
            processes = [
                subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)  # noqa: S603 - ours
                for _ in range(workers)
            ]
            outputs = [process.communicate()[0] for process in processes]
        workers_cpu = _children_cpu() - children_before
        machine_cpu = machine_cpu_seconds() - machine_before
        feed_cpu = time.process_time() - own_before
        emulator_busy = archive.moto.busy()[0] - busy_before
        dynamodb_cpu = archive.moto.dynamodb.cpu_seconds() - cpu_before if archive.moto.dynamodb else 0.0
        drained = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
        polled = sum(archive.feed.polls(task_id) for task_id in task_ids)
    records = sum(d["records"] for d in drained)
    if polled != tasks or records < tasks:
        raise RuntimeError(f"{workers} workers polled {polled} of {tasks} tasks ({records} records)")
    return {
        "workers": workers,
        "seconds": round(elapsed[0], 2),
        "emulated_aws_busy_seconds": round(emulator_busy, 2),
        "dynamodb_local_cpu_seconds": round(dynamodb_cpu, 2),
        "workers_cpu_seconds": round(workers_cpu, 2),
        "feed_emulator_cpu_seconds": round(feed_cpu, 2),
        # CPU of everything the drain ran on (moto's busy time standing for its CPU), over the cores:
        # no number of workers can finish sooner on this machine.
        "cpu_floor_seconds": round((workers_cpu + feed_cpu + dynamodb_cpu + emulator_busy) / CORES, 2),
        # Every process's CPU meanwhile, over what the cores could give: near 1, the machine was full.
        "machine_busy_fraction": round(machine_cpu / (CORES * elapsed[0]), 2),
        "records": records,
        "returned": sum(d["returned"] for d in drained),
    }


def measure(
    tasks: int = 2000, latency: float = 0.1, counts: tuple[int, ...] = (1, 2, 4)
) -> tuple[list[Figure], list[dict[str, Any]]]:
    if shared_dynamodb() is not None:
        drain_with(2, min(tasks, 1000), latency)  # discarded: DynamoDB Local's JVM warms up on the same calls
    runs = [drain_with(workers, tasks, latency) for workers in counts]
    one, most = runs[0], runs[-1]
    speedup = one["seconds"] / most["seconds"]
    timings = ", ".join(f"{r['workers']}: {r['seconds']:.1f} s" for r in runs)
    # However many workers, the run cannot be shorter than moto_server's busy time (it serves one
    # request at a time), nor than the CPU it all needs spread over this machine's cores: one
    # worker's time over the larger of the two bounds any speed-up.
    floor = max(max(r["emulated_aws_busy_seconds"], r["cpu_floor_seconds"]) for r in runs)
    bound = one["seconds"] / floor
    figures = [
        Figure(
            f"scale-out, {most['workers']} vs {one['workers']} worker",
            f"{tasks} tasks, {latency * 1000:.0f} ms feed; {timings}",
            f">= 3 x one worker ({most['workers']} workers)",
            speedup,
            3.0,
            higher_is_better=True,
        ),
        Figure(
            "scale-out, bound by emulation + CPU",
            f"{most['workers']} workers: CPU floor {most['cpu_floor_seconds']:.1f} s ({CORES} cores),"
            f" machine {most['machine_busy_fraction']:.0%} busy, of {most['seconds']:.1f} s",
            f"speed-up possible here: {bound:.2f}",
            speedup / bound,
            0.8,
            higher_is_better=True,
        ),
    ]
    return figures, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--worker-of", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_of:
        worker_process(args.worker_of)
        return 0
    figures, runs = measure(args.tasks, args.latency, tuple(args.workers))
    for figure in figures:
        print(figure.line())
    for run in runs:
        print(f"   {run}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
