"""An archive watched as its user watches it, for the demo, the tests and the benchmarks: an SQS
queue subscribed to the completion topic (raw delivery), the events it received, and whether every
task has ended and been announced."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from runway_archiver_lambda.tasks import PENDING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient


def subscribe_queue(sqs: SQSClient, sns: SNSClient, topic_arn: str, name: str) -> str:
    """A new queue subscribed to the topic with raw delivery (a CloudEvent per message body); its URL.

    The queue's policy lets the topic (and nothing else) send to it, as SQS needs on AWS for SNS to
    deliver (moto delivers without it)."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def receive_events(sqs: SQSClient, queue_url: str) -> list[dict[str, Any]]:
    """Every event waiting on the queue, received and deleted, in the order received; each carries
    its SNS message attributes under `_attributes`."""
    received: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            return received
        for message in batch:
            body = json.loads(message["Body"])
            body["_attributes"] = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
            received.append(body)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def wait_for_event(sqs: SQSClient, queue_url: str, task_id: str, timeout: float = 30.0) -> None:
    """Receive (and delete) events until the one about `task_id` arrives; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            if json.loads(message["Body"])["subject"] == task_id:
                return
    raise TimeoutError(f"no event for {task_id} within {timeout} s")


def all_ended(table: Table) -> bool:
    """Every task of a small table has ended and been announced (one Scan page: for demos, not for a
    real archive, which the poller and the CLI read through its indexes)."""
    items = table.scan(ConsistentRead=True)["Items"]
    return all(item["status"] != PENDING and "outbox" not in item for item in items)
