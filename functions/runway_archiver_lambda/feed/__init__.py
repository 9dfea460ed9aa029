"""Asking a provider about a task, and what its answer means, for every model family behind the gateway.

- `model`: the archiver's model of an answer (`FeedAnswer`, `Progress`) and the status rules every
  family shares;
- `family`: what a family's module says (`Family`: how to ask, how to read, how media are
  fetched), and the registry that discovers the modules of `families/`;
- `client`: the HTTP side (`FeedClient`), errors sorted by kind;
- `families/`: one module per family (runway, kling, sora, ...).

`classify`, `read_answer`, `task_object` and `dialect_of` read Runway's answers (the stack's default
family), as they did before other families existed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import MAX_ANSWER_BYTES, RETRYABLE_STATUSES, ApiKeySource, FeedClient, MediaAuth, default_retry
from .families.runway import FAMILY as RUNWAY_FAMILY
from .families.runway import dialect_of
from .family import DEFAULT_FAMILY, Family, Query, families, family_named, known_families
from .model import (
    MAX_OUTPUTS,
    TASK_NOT_EXIST,
    Dialect,
    FeedAnswer,
    FeedError,
    FeedErrorKind,
    NativeDialect,
    Progress,
    Provider,
    status_word,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_FAMILY",
    "MAX_ANSWER_BYTES",
    "MAX_OUTPUTS",
    "RETRYABLE_STATUSES",
    "TASK_NOT_EXIST",
    "ApiKeySource",
    "Dialect",
    "Family",
    "FeedAnswer",
    "FeedClient",
    "FeedError",
    "FeedErrorKind",
    "MediaAuth",
    "NativeDialect",
    "Progress",
    "Provider",
    "Query",
    "classify",
    "default_retry",
    "dialect_of",
    "families",
    "family_named",
    "known_families",
    "read_answer",
    "status_word",
    "task_object",
]


def classify(task_id: str, data: Mapping[str, Any], provider: Provider = Provider.COMETAPI) -> FeedAnswer:
    """Read one Runway task object (a feed `data`, an envelope's `data`, or Runway's task) into a `FeedAnswer`."""
    return RUNWAY_FAMILY.classify(task_id, data, provider)


def read_answer(task_id: str, body: Mapping[str, Any], provider: Provider = Provider.COMETAPI) -> FeedAnswer:
    """A whole Runway answer body (an envelope of either age, or a bare task) read into a `FeedAnswer`."""
    return RUNWAY_FAMILY.read_answer(task_id, body, provider)


def task_object(task_id: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The task object inside a Runway answer: the envelope's `data`, or the answer itself (a bare task)."""
    return RUNWAY_FAMILY.task_object(task_id, body)
