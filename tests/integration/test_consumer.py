"""The consumer's queue as the demo, the tests and the benchmarks subscribe it: on AWS, SNS delivers to
an SQS queue only if the queue's policy lets that topic send (moto delivers regardless)."""

from __future__ import annotations

import json

import boto3

from tests.support.archive import Archive


def test_the_subscribed_queue_lets_the_topic_and_nothing_else_send_to_it(archive: Archive) -> None:
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=archive.queue_url, AttributeNames=["Policy", "QueueArn"])
    [statement] = json.loads(attributes["Attributes"]["Policy"])["Statement"]
    assert statement == {
        "Effect": "Allow",
        "Principal": {"Service": "sns.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": attributes["Attributes"]["QueueArn"],
        "Condition": {"ArnEquals": {"aws:SourceArn": archive.stack.topic_arn}},
    }
