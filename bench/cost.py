"""A cost model per 1,000 archived videos, from durations measured by the benchmarks.

Prices are us-east-1 list prices (on-demand, arm64), kept here as constants so a reader can
change them; the quantities come from the code's behaviour (requests per poll and per archive)
and from the measured durations passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MiB = 1024 * 1024
PART_SIZE = 8 * MiB  # media.streaming_transfer_config

# USD, us-east-1 list prices.
LAMBDA_GB_SECOND_ARM = 0.0000133334
LAMBDA_REQUEST = 0.20 / 1e6
DYNAMODB_WRITE_UNIT = 0.625 / 1e6  # on-demand write request unit
DYNAMODB_READ_UNIT = 0.125 / 1e6  # on-demand read request unit
S3_PUT = 0.005 / 1000
S3_TRANSITION_GLACIER_IR = 0.02 / 1000
S3_STANDARD_GB_MONTH = 0.023
S3_GLACIER_IR_GB_MONTH = 0.004
SNS_PUBLISH = 0.50 / 1e6
SCHEDULER_INVOCATION = 1.00 / 1e6


@dataclass(frozen=True)
class Usage:
    """What the archive is asked to do, and how long its work measured here took."""

    videos: int = 1000
    video_mib: float = 20.0
    image_kib: float = 100.0  # poster and last frame, each
    polls_per_task: int = 5  # a generation of a few minutes, polled every minute until it ends
    memory_gb: float = 1.0  # the poller's MemorySize
    seconds_per_poll: float = 0.03  # measured: one run's wall time / tasks polled (pool of 16)
    seconds_per_mib_copied: float = 0.015  # measured: the streaming copy

    @property
    def poll_gb_seconds(self) -> float:
        return self.videos * self.polls_per_task * self.seconds_per_poll * self.memory_gb

    @property
    def copy_gb_seconds(self) -> float:
        mib = self.video_mib + 2 * self.image_kib / 1024
        return self.videos * mib * self.seconds_per_mib_copied * self.memory_gb


def dynamodb_write_units(usage: Usage) -> float:
    """Per task: each poll is a claim and a reschedule, each also writing the status index; the
    last poll is a claim, the outcome (about 3 KB with the stored event, plus both indexes) and the
    announcement mark (plus the outbox index)."""
    per_poll = 2 * (1 + 1)
    final = (1 + 1) + (3 + 2) + (3 + 1)
    return usage.videos * ((usage.polls_per_task - 1) * per_poll + final)


def s3_puts(usage: Usage) -> int:
    video_parts = math.ceil(usage.video_mib * MiB / PART_SIZE)
    video = 1 if video_parts <= 1 else video_parts + 2  # create + parts + complete
    return usage.videos * (video + 2)


def monthly_storage_gb(usage: Usage) -> float:
    return usage.videos * (usage.video_mib + 2 * usage.image_kib / 1024) / 1024


def cost_table(usage: Usage) -> list[tuple[str, str, float]]:
    """(item, quantity, USD) per `usage.videos` archived videos."""
    gb_seconds = usage.poll_gb_seconds + usage.copy_gb_seconds
    polls = usage.videos * usage.polls_per_task
    writes = dynamodb_write_units(usage)
    reads = polls * 0.5 * 0.1  # discovery: index entries of ~100 bytes, eventually consistent
    puts = s3_puts(usage)
    storage = monthly_storage_gb(usage)
    return [
        (
            "Lambda compute",
            f"{gb_seconds:,.1f} GB-s ({polls:,} polls, {usage.videos:,} copies)",
            gb_seconds * LAMBDA_GB_SECOND_ARM,
        ),
        ("DynamoDB writes", f"{writes:,.0f} write units", writes * DYNAMODB_WRITE_UNIT),
        ("DynamoDB reads", f"{reads:,.0f} read units", reads * DYNAMODB_READ_UNIT),
        ("S3 requests", f"{puts:,} PUT-class", puts * S3_PUT),
        ("S3 lifecycle", f"{3 * usage.videos:,} transitions", 3 * usage.videos * S3_TRANSITION_GLACIER_IR),
        ("SNS", f"{usage.videos:,} publishes", usage.videos * SNS_PUBLISH),
        ("S3 storage, first 30 days", f"{storage:,.1f} GB STANDARD", storage * S3_STANDARD_GB_MONTH),
        ("S3 storage, each month after", f"{storage:,.1f} GB GLACIER_IR", storage * S3_GLACIER_IR_GB_MONTH),
    ]


def fixed_monthly(idle_run_seconds: float, memory_gb: float = 1.0) -> list[tuple[str, str, float]]:
    """What the schedule costs a month with nothing to do (rate(1 minute))."""
    runs = 60 * 24 * 30
    gb_seconds = runs * idle_run_seconds * memory_gb
    return [
        (
            "idle scheduled runs",
            f"{runs:,} invocations, {gb_seconds:,.0f} GB-s",
            gb_seconds * LAMBDA_GB_SECOND_ARM + runs * LAMBDA_REQUEST,
        ),
        ("EventBridge Scheduler", f"{runs:,} invocations (14 M/month free)", runs * SCHEDULER_INVOCATION),
        ("Secrets Manager", "2 secrets", 0.80),
    ]
