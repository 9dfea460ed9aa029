"""What every benchmark stands on: the embedded AWS (DynamoDB Local and moto_server, each its own
process; `RUNWAY_ARCHIVER_DYNAMODB=moto` for moto's DynamoDB) with template.yaml deployed, the
feed/CDN emulator with a chosen latency, and the deployed functions' code run in this process with
the environment the deploy gave them (as `runway-archiver run` does against the embedded AWS)."""

from __future__ import annotations

import atexit
import functools
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from runway_archiver.local.deploy import DeployedStack, deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import (
    DYNAMODB_LOCAL,
    SILENT,
    DynamoDBLocal,
    LocalLambdaContext,
    MotoServer,
    patched_environ,
    uses_dynamodb_local,
)
from runway_archiver_lambda.clock import iso_utc

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

KEY = "bench-key"


def dynamodb_engine() -> str:
    """The embedded DynamoDB the figures are measured against: every figure line names it."""
    return DYNAMODB_LOCAL if uses_dynamodb_local() else "moto"


@functools.cache
def shared_dynamodb() -> DynamoDBLocal | None:
    """One DynamoDB Local per benchmark process, warmed up once: a cold JVM answers the first few
    hundred calls about 8 x slower, which would be timed otherwise."""
    if not uses_dynamodb_local():
        return None
    dynamodb = DynamoDBLocal()
    dynamodb.start()
    atexit.register(dynamodb.stop)
    dynamodb.wait()
    dynamodb.warm_up()
    return dynamodb


def machine_cpu_seconds() -> float:
    """CPU seconds every process on this machine has used since boot (/proc/stat), whoever ran them:
    what a benchmark's processes could not have, on a machine shared with other work."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


@dataclass
class LocalArchive:
    moto: MotoServer
    feed: FeedEmulator
    session: boto3.session.Session
    stack: DeployedStack

    def register(self, task_ids: list[str], **attributes: Any) -> None:
        """Put PENDING items fast (batch writes): the table as users fill it."""
        with self.session.resource("dynamodb").Table(self.stack.table_name).batch_writer() as batch:
            for task_id in task_ids:
                batch.put_item(Item={"task_id": task_id, "status": "PENDING", **attributes})

    def run_poller(
        self,
        at: datetime | None = None,
        *,
        env: Mapping[str, str] | None = None,
        session: boto3.session.Session | None = None,
        timeout_seconds: float = 240.0,
    ) -> dict[str, Any]:
        """One poller run in a fresh container (cold: clients built anew from the environment)."""
        with patched_environ({**self.stack.function_environment, **SILENT, **(env or {})}):
            from runway_archiver_lambda.handlers import poller

            poller._poller = poller.build_poller(os.environ, session) if session else None
            event = {"scheduled_time": iso_utc(at or datetime.now(UTC))}
            summary: dict[str, Any] = poller.lambda_handler(event, LocalLambdaContext(timeout_seconds=timeout_seconds))
            poller._poller = None
            return summary


@contextmanager
def local_archive(
    latency: float = 0.1, parameters: Mapping[str, str] | None = None, media_bytes_per_second: float | None = None
) -> Iterator[LocalArchive]:
    dynamodb = shared_dynamodb()
    if dynamodb is not None:
        dynamodb.reset()  # each archive starts from an empty DynamoDB, like its fresh moto_server
    with (
        MotoServer(dynamodb=dynamodb) as moto,
        FeedEmulator(api_key=KEY, latency=latency, media_bytes_per_second=media_bytes_per_second) as feed,
        patched_environ({**moto.environment(), **SILENT}),
    ):
        session = boto3.session.Session()
        stack = deploy(
            session,
            api_key=KEY,
            parameters={**feed.stack_parameters(), **(parameters or {})},
        )
        yield LocalArchive(moto, feed, session, stack)


ROOT = Path(__file__).resolve().parents[1]


def child_environment(function_environment: Mapping[str, str]) -> dict[str, str]:
    """The environment of a benchmark's child process that runs a deployed function's code."""
    python_path = os.pathsep.join([str(ROOT), str(ROOT / "functions"), str(ROOT / "src")])
    return {**os.environ, **function_environment, **SILENT, "PYTHONPATH": python_path}


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as elapsed:` ... then `elapsed[0]` is the wall time in seconds."""
    elapsed: list[float] = []
    started = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed.append(time.perf_counter() - started)


@dataclass(frozen=True)
class Figure:
    """One line of the report: the figure, its target, the ratio that decides it."""

    name: str
    measured: str
    target: str
    ratio: float
    limit: float
    higher_is_better: bool = False
    engine: str = field(default_factory=dynamodb_engine)  # the embedded DynamoDB it was measured against

    @property
    def met(self) -> bool:
        return self.ratio >= self.limit if self.higher_is_better else self.ratio <= self.limit

    def line(self) -> str:
        verdict = "met" if self.met else "NOT MET"
        return (
            f"{self.name:<34} {self.measured:<44} target {self.target:<28} ratio {self.ratio:6.3f}  {verdict:<7}"
            f"  [{self.engine}]"
        )
