"""Locally, what Lambda's SQS event source mapping does for the worker (moto cannot invoke it).

Receive a batch, hand it to the worker's handler as Lambda would (an SQS event), delete the
records the handler did not return in `batchItemFailures`, and leave those to come back after
their visibility timeout, exactly as the real mapping with `ReportBatchItemFailures` does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from mypy_boto3_sqs import SQSClient


@dataclass
class Drained:
    batches: int = 0
    records: int = 0
    returned: int = 0  # reported in batchItemFailures, left in the queue


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS event as Lambda builds it from received messages."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": message.get("MessageAttributes", {}),
                "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def drain(
    sqs: SQSClient,
    queue_url: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    context_factory: Callable[[], Any],
    *,
    batch_size: int = 10,
    visibility_timeout: int = 60,
    max_batches: int | None = None,
) -> Drained:
    """Feed the queue to `handler` until a receive comes back empty (or `max_batches`)."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
    queue_arn = attributes["QueueArn"]
    region = queue_arn.split(":")[3]
    drained = Drained()
    while max_batches is None or drained.batches < max_batches:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch_size,
            VisibilityTimeout=visibility_timeout,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        response = handler(sqs_event(messages, queue_arn, region), context_factory())
        returned = {failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in returned]
        for start in range(0, len(done), 10):
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
                ],
            )
        drained.batches += 1
        drained.records += len(messages)
        drained.returned += len(returned)
    return drained
