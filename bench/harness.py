"""What every benchmark stands on: moto_server (its own process) with template.yaml deployed, the
feed/CDN emulator with a chosen latency, and the deployed functions' code run in this process with
the environment the deploy gave them (as `runway-archiver run` does against the embedded AWS)."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3

from runway_archiver.emulator import FeedEmulator
from runway_archiver.local_aws import DeployedStack, LocalLambdaContext, MotoServer, deploy, patched_environ

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

KEY = "bench-key"
QUIET = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_LOG_LEVEL": "ERROR"}


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
        with patched_environ({**self.stack.function_environment, **QUIET, **(env or {})}):
            from archiver import handler

            handler._poller = handler.build_poller(os.environ, session) if session else None
            event = {"scheduled_time": iso(at or datetime.now(UTC))}
            summary: dict[str, Any] = handler.lambda_handler(event, LocalLambdaContext(timeout_seconds=timeout_seconds))
            handler._poller = None
            return summary


@contextmanager
def local_archive(
    latency: float = 0.1, parameters: Mapping[str, str] | None = None, media_bytes_per_second: float | None = None
) -> Iterator[LocalArchive]:
    with (
        MotoServer() as moto,
        FeedEmulator(api_key=KEY, latency=latency, media_bytes_per_second=media_bytes_per_second) as feed,
        patched_environ({**moto.environment(), **QUIET}),
    ):
        session = boto3.session.Session()
        stack = deploy(
            session,
            api_key=KEY,
            parameters={**feed.stack_parameters(), **(parameters or {})},
        )
        yield LocalArchive(moto, feed, session, stack)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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

    @property
    def met(self) -> bool:
        return self.ratio >= self.limit if self.higher_is_better else self.ratio <= self.limit

    def line(self) -> str:
        verdict = "met" if self.met else "NOT MET"
        return f"{self.name:<34} {self.measured:<44} target {self.target:<28} ratio {self.ratio:6.3f}  {verdict}"
