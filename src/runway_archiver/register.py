"""Register tasks for archiving: put {task_id, status: "PENDING"} unless the task is known."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3

from runway_archiver_lambda.feed import family_named, known_families
from runway_archiver_lambda.tasks import FORGOTTEN, TaskStore

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mypy_boto3_dynamodb.service_resource import Table


def invalid_task_ids(task_ids: Iterable[str]) -> list[str]:
    """The ids the archiver would refuse (its own rule, VALID_TASK_ID): empty, a space, a leading dash..."""
    from runway_archiver_lambda.lifecycle import VALID_TASK_ID

    return [task_id for task_id in task_ids if not VALID_TASK_ID.fullmatch(task_id.strip())]


@dataclass
class Registration:
    registered: list[str] = field(default_factory=list)
    already_known: list[str] = field(default_factory=list)
    # Erased with `forget`: the tombstone keeps the id from coming back (unless forgotten --allow-again).
    forgotten: list[str] = field(default_factory=list)


class UnknownProvider(ValueError):
    """A registration names a model family no module of this archiver serves."""


def checked_provider(provider: str | None) -> str | None:
    """The family's name as items store it, or None (the default, Runway); an unknown name raises, in one line."""
    if provider is None:
        return None
    family = family_named(provider) if provider.strip() else None
    if family is None:
        raise UnknownProvider(f"unknown provider {provider!r}: known providers are {known_families()}")
    return family.name


def register_tasks(table: str | Table, task_ids: Iterable[str], provider: str | None = None) -> Registration:
    """Register each task id once; an id already in the table is left as it is (never reset).

    A forgotten task's tombstone is such an item: it is reported in `forgotten`, never registered again.
    `provider` names the tasks' model family (runway, kling, sora...; None: the stack's default,
    Runway); an unknown one raises `UnknownProvider` before anything is written.

    `table` is a table name (boto3's default session is used) or a boto3 Table resource.
    """
    family = checked_provider(provider)
    target = boto3.resource("dynamodb").Table(table) if isinstance(table, str) else table
    store = TaskStore(target)
    result = Registration()
    for raw in task_ids:
        if not isinstance(raw, str):
            raise TypeError(f"a task id must be a string, not {type(raw).__name__}")
        task_id = raw.strip()
        if not task_id:
            raise ValueError("a task id must not be empty")
        if store.register(task_id, family):
            result.registered.append(task_id)
        elif store.status_of(task_id) == FORGOTTEN:
            result.forgotten.append(task_id)
        else:
            result.already_known.append(task_id)
    return result
