"""Target 4, discovery cost: items DynamoDB reads to find due work in a table that keeps everything.

20,000 archived tasks and 100 pending ones; one run. Every DynamoDB call the run makes is seen
through botocore's event hooks on the run's own session: Query pages' `ScannedCount` is what was
read (moto's consumed-capacity figures are constant, so items are counted), and a Scan is counted
if one is ever issued.

    python -m bench.discovery [--archived 20000] [--pending 100]
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

import boto3

from .harness import Figure, local_archive


class DynamoCalls:
    """Counts DynamoDB operations and the items Query/Scan pages read."""

    def __init__(self, session: boto3.session.Session) -> None:
        self.operations: Counter[str] = Counter()
        self.items_read: Counter[str] = Counter()
        session.events.register("after-call.dynamodb", self._after)

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        self.operations[model.name] += 1
        if model.name in ("Query", "Scan"):
            self.items_read[model.name] += int(parsed.get("ScannedCount", 0))


def measure(archived: int = 20_000, pending: int = 100) -> tuple[Figure, dict[str, int]]:
    with local_archive(latency=0.0) as archive:
        # Archived items as the archiver leaves them: status ARCHIVED, no outbox.
        table = archive.session.resource("dynamodb").Table(archive.stack.table_name)
        with table.batch_writer() as batch:
            for n in range(archived):
                batch.put_item(Item={"task_id": f"done-{n:06d}", "status": "ARCHIVED", "completed_at": "2026-01-01"})
        due = [f"due-{n:04d}" for n in range(pending)]
        for task_id in due:
            archive.feed.add_task(task_id, "1")
        archive.register(due)

        session = boto3.session.Session()
        calls = DynamoCalls(session)
        summary = archive.run_poller(session=session, env={"FANOUT_THRESHOLD": str(pending + 1)})
    if summary["due"] != pending:
        raise RuntimeError(f"the run found {summary['due']} due tasks, not {pending}: {summary}")
    read = calls.items_read["Query"] + calls.items_read["Scan"]
    figure = Figure(
        "4. discovery cost",
        f"{read} items read for {pending} due in {archived + pending}; Scans: {calls.operations['Scan']}",
        "<= 1.05 x due, no Scan",
        read / pending if calls.operations["Scan"] == 0 else float("inf"),
        1.05,
    )
    return figure, {"queries": calls.operations["Query"], "scans": calls.operations["Scan"], "items_read": read}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archived", type=int, default=20_000)
    parser.add_argument("--pending", type=int, default=100)
    args = parser.parse_args(argv)
    figure, details = measure(args.archived, args.pending)
    print(figure.line())
    print(f"   DynamoDB calls of the run: {details}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
