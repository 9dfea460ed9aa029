"""Target 5, cold start: importing each entry point versus importing boto3 alone, and the
Secrets Manager calls per cold start.

Import cost is measured with `python -X importtime` in fresh interpreters (the median of several),
as the sum of the top-level imports' cumulative times, less an empty interpreter's. Then a cold
container does three runs against the embedded AWS, and botocore's event hooks count the
GetSecretValue calls.

    python -m bench.cold_start [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from runway_archiver.local.engines import SILENT, LocalLambdaContext, patched_environ

from .harness import Figure, local_archive

FUNCTIONS = Path(__file__).resolve().parents[1] / "functions"
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")
# What the handler's module needs in its environment to import (as in Lambda, set by the template).
IMPORT_ENV = {"POWERTOOLS_SERVICE_NAME": "runway-archiver", "POWERTOOLS_METRICS_NAMESPACE": "RunwayArchiver"}


def import_microseconds(statement: str) -> int:
    """Cumulative microseconds of the top-level imports `statement` triggers in a fresh interpreter."""
    done = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **IMPORT_ENV, "PYTHONPATH": str(FUNCTIONS)},
    )
    total = 0
    for match in _LINE.finditer(done.stderr):
        if len(match.group(3)) == 1:  # one space of indent: imported by the statement or start-up itself
            total += int(match.group(2))
    return total


def median_import(statement: str, repeat: int) -> float:
    baseline = statistics.median(import_microseconds("pass") for _ in range(repeat))
    return (statistics.median(import_microseconds(statement) for _ in range(repeat)) - baseline) / 1e6


def secret_reads_per_cold_start(runs: int = 3) -> int:
    with local_archive(latency=0.0) as archive:
        session = boto3.session.Session()
        calls: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            calls[model.name] += 1

        session.events.register("after-call.secretsmanager", count)
        from runway_archiver_lambda.handlers import poller

        with patched_environ({**archive.stack.function_environment, **SILENT}):
            poller._poller = poller.build_poller(os.environ, session)
            for run in range(runs):
                archive.feed.add_task(f"secret-{run}", "1")
                archive.register([f"secret-{run}"])
                poller.lambda_handler({}, LocalLambdaContext())
            poller._poller = None
        return calls["GetSecretValue"]


def measure(repeat: int = 7) -> tuple[list[Figure], dict[str, float]]:
    boto3_seconds = median_import("import boto3", repeat)
    figures = []
    details = {"boto3_import_seconds": boto3_seconds}
    for module in (
        "runway_archiver_lambda.handlers.poller",
        "runway_archiver_lambda.handlers.worker",
        "runway_archiver_lambda.handlers.callback",
    ):
        seconds = median_import(f"import {module}", repeat)
        details[f"{module}_import_seconds"] = seconds
        figures.append(
            Figure(
                f"5. cold start: import {module.split('.')[-1]}",
                f"{seconds * 1000:.0f} ms vs import boto3 {boto3_seconds * 1000:.0f} ms",
                "<= 1.5 x import boto3",
                seconds / boto3_seconds,
                1.5,
            )
        )
    reads = secret_reads_per_cold_start()
    figures.append(Figure("5. secret reads per cold start", f"{reads} GetSecretValue over 3 runs", "1", reads, 1.0))
    return figures, details


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    figures, _ = measure(args.repeat)
    for figure in figures:
        print(figure.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
