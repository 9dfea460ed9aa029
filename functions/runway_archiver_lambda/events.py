"""The completion event: a CloudEvents 1.0 JSON object, published to SNS."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

EVENT_TYPES = {
    "ARCHIVED": "runway.task.archived",
    "FAILED": "runway.task.failed",
    "EXPIRED": "runway.task.expired",
    # Additive: the task's files and record were erased (`runway-archiver forget`).
    "FORGOTTEN": "runway.task.forgotten",
}
# Event ids are derived, not random: the same task and outcome always give the same id,
# so a consumer can drop a redelivered duplicate.
_EVENT_ID_NAMESPACE = uuid.UUID("5b0b8e55-7c1f-4f0e-9b51-4d8f1f3c6a21")
# Always in `assets` (null when absent); a task with several outputs adds `video_2`, `video_3`...
BASE_ASSET_ROLES = ("video", "poster", "last_frame")


def asset_map(assets: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Mapping[str, Any] | None]:
    """The contract's `assets`: the three base roles always, further outputs only when there are any."""
    extra = sorted((role for role in assets if role not in BASE_ASSET_ROLES and assets[role]), key=_output_number)
    return {role: assets.get(role) for role in (*BASE_ASSET_ROLES, *extra)}


def _output_number(role: str) -> int:
    suffix = role.rpartition("_")[2]
    return int(suffix) if suffix.isdigit() else 0


def event_id(task_id: str, status: str) -> str:
    return str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{task_id}/{status}"))


def build_event(
    *,
    source: str,
    task_id: str,
    status: str,
    time: str,
    assets: Mapping[str, Mapping[str, Any] | None],
    prompt: str | None,
    prompt_en: str | None,
    error: str | None,
    provider: Mapping[str, Any] | None,
    provider_name: str | None = None,
    dialect: str | None = None,
    manifest: Mapping[str, Any] | None = None,
    model_family: str | None = None,
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id(task_id, status),
        "source": source,
        "type": EVENT_TYPES[status],
        "subject": task_id,
        "time": time,
        "datacontenttype": "application/json",
        "data": {
            "task_id": task_id,
            "status": status,
            "assets": asset_map(assets),
            "prompt": prompt,
            "prompt_en": prompt_en,
            "error": error,
            "provider": provider,
            # Additive (older events lack it): whose API answered, and in which shape.
            "provider_name": provider_name,
            "dialect": dialect,
            # Additive (older events lack it): the manifest beside the media (null unless ARCHIVED).
            "manifest": manifest,
            # Additive: the model family whose task this is (runway, kling, sora...).
            "model_family": model_family,
        },
    }


def encode(event: Mapping[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), sort_keys=True)


class EventPublisher:
    """Publishes stored events to the completion topic, with filterable attributes."""

    def __init__(self, sns: SNSClient, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def publish(self, message: str) -> str:
        event = json.loads(message)
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            "type": {"DataType": "String", "StringValue": event["type"]},
            "status": {"DataType": "String", "StringValue": event["data"]["status"]},
        }
        if event["data"].get("provider_name"):  # events recorded before it existed have none
            attributes["provider"] = {"DataType": "String", "StringValue": event["data"]["provider_name"]}
        if event["data"].get("model_family"):  # nor this, before model families
            attributes["model_family"] = {"DataType": "String", "StringValue": event["data"]["model_family"]}
        response = self._sns.publish(TopicArn=self._topic_arn, Message=message, MessageAttributes=attributes)
        return response["MessageId"]
