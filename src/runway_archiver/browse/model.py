"""What the browse page reads of one stack's archive: the filters a grid page is asked with, the
cards of a grid page (newest first, from the table's `recent-index`), a task's page, and
`Browser`, which reads them, with presigned links to the media.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from botocore.config import Config
from botocore.exceptions import ClientError

from runway_archiver_lambda.feed.family import DEFAULT_FAMILY
from runway_archiver_lambda.tasks import ARCHIVED, EXPIRED, FAILED

from ..stack.archive import Archive, OperatorError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import boto3

    from ..stack.archive import StackResources


RECENT_INDEX = "recent-index"  # template.yaml: status (HASH), completed_at (RANGE), keys only
BROWSABLE = (ARCHIVED, FAILED, EXPIRED)  # the statuses that carry completed_at
LINK_SECONDS = 3600  # a presigned link works this long (the page says until when)
PAGE_SIZE = 24
MAX_ROUNDS = 20  # index pages read for one grid page when a provider filter skips most tasks
# What a grid card reads of each item (BatchGetItem), and no more.
CARD_ATTRIBUTES = (
    "task_id",
    "status",
    "completed_at",
    "assets",
    "provider",
    "model_family",
    "provider_name",
    "model",
    "duration",
    "error",
    "prompt",
)


class BrowseError(Exception):
    """A request the page cannot answer, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- what the grid asks for ---------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    status: str = ARCHIVED
    provider: str = ""
    since: date | None = None
    until: date | None = None
    after: dict[str, str] | None = None  # where the previous page stopped (an index key)

    @classmethod
    def parse(cls, query: Mapping[str, list[str]]) -> Filters:
        def one(name: str) -> str:
            return (query.get(name) or [""])[0].strip()

        status = one("status").upper() or ARCHIVED
        if status not in BROWSABLE:
            raise BrowseError(400, f"status must be one of {', '.join(BROWSABLE)}")
        since, until = _day(one("since"), "from"), _day(one("until"), "to")
        if since and until and since > until:
            raise BrowseError(400, "the 'from' date is after the 'to' date")
        after = _cursor(one("after"), status) if one("after") else None
        return cls(status, one("provider")[:100], since, until, after)

    def query(self, after: dict[str, str] | None = None) -> str:
        """These filters as a query string (for the next page's link)."""
        values = {
            "status": self.status,
            "provider": self.provider,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "after": _encode_cursor(after) if after else "",
        }
        return urlencode({k: v for k, v in values.items() if v})


def _day(text: str, what: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise BrowseError(400, f"the '{what}' date must be YYYY-MM-DD") from None


def _encode_cursor(key: Mapping[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode().rstrip("=")


def _cursor(text: str, status: str) -> dict[str, str]:
    stale = BrowseError(400, "this page's link is damaged or from another filter: start again from the first page")
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise stale from None
    if not isinstance(key, dict) or set(key) != {"task_id", "status", "completed_at"}:
        raise stale
    if not all(isinstance(v, str) for v in key.values()) or key["status"] != status:
        raise stale
    return key


# -- what the page shows ------------------------------------------------------------------------
@dataclass(frozen=True)
class Card:
    task_id: str
    status: str
    completed_at: str
    provider: str
    model: str | None
    size: int | None
    duration: float | None
    poster_url: str | None  # the poster (or the last frame)
    preview_url: str | None  # no picture: the video itself, its first frame shown
    error: str | None
    prompt: str | None


@dataclass(frozen=True)
class GridPage:
    filters: Filters
    cards: list[Card]
    next_after: dict[str, str] | None
    examined: int  # index entries read for this page
    expires_at: datetime


@dataclass(frozen=True)
class Medium:
    role: str
    url: str | None
    asset: dict[str, Any]


@dataclass(frozen=True)
class TaskView:
    item: dict[str, Any]
    card: Card
    media: list[Medium]
    manifest: dict[str, Any] | None
    manifest_problem: str | None
    expires_at: datetime
    link_seconds: int


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def provider_of(item: Mapping[str, Any], default: str) -> str:
    """The task's provider (model family): the item's `model_family`, else the default family
    (Runway's, which every item registered without a family belongs to)."""
    return _text(item.get("model_family")) or default


def _answer(item: Mapping[str, Any]) -> Mapping[str, Any]:
    answer = item.get("provider")
    return answer if isinstance(answer, dict) else {}


def model_of(item: Mapping[str, Any]) -> str | None:
    return _text(item.get("model")) or _text(_answer(item).get("model"))


def size_of(asset: Mapping[str, Any]) -> int | None:
    """A file's size in bytes, as its asset record says (None where it says no number)."""
    number = _number(asset.get("size"))
    return int(number) if number is not None else None


def duration_of(item: Mapping[str, Any]) -> float | None:
    """Seconds of video, where the item or the provider's answer says (many answers do not)."""
    for value in (item.get("duration"), _answer(item).get("duration"), _answer(item).get("seconds")):
        seconds = _number(value)
        if seconds is not None and seconds > 0:
            return seconds
    return None


class Browser:
    """Reads one stack's archive for the page: the grid's pages and a task's page."""

    def __init__(
        self,
        archive: Archive,
        *,
        default_provider: str,
        link_seconds: int = LINK_SECONDS,
        stack_name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.archive = archive
        self.default_provider = default_provider
        self.link_seconds = link_seconds
        self.stack_name = stack_name or archive.table.name
        self._clock = clock
        self._s3 = archive.session.client("s3", config=Config(signature_version="s3v4"))
        self._lock = threading.Lock()  # boto3's resources are not thread-safe; its clients are

    @classmethod
    def for_stack(cls, session: boto3.session.Session, resources: StackResources, link_seconds: int) -> Browser:
        archive = Archive(session, resources.table_name, resources)
        return cls(archive, default_provider=DEFAULT_FAMILY, link_seconds=link_seconds, stack_name=resources.stack_name)

    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self._clock() + self.link_seconds, UTC)

    def link(self, asset: Mapping[str, Any] | None) -> str | None:
        """A presigned GET of the archived version of that file, or None."""
        if not isinstance(asset, dict) or not asset.get("bucket") or not asset.get("key"):
            return None
        params = {"Bucket": str(asset["bucket"]), "Key": str(asset["key"])}
        if asset.get("version_id"):
            params["VersionId"] = str(asset["version_id"])
        url: str = self._s3.generate_presigned_url("get_object", Params=params, ExpiresIn=self.link_seconds)
        return url

    def card(self, item: Mapping[str, Any]) -> Card:
        assets = item.get("assets") if isinstance(item.get("assets"), dict) else {}
        assert isinstance(assets, dict)
        video = assets.get("video") if isinstance(assets.get("video"), dict) else None
        poster = self.link(assets.get("poster")) or self.link(assets.get("last_frame"))
        return Card(
            task_id=str(item.get("task_id")),
            status=str(item.get("status")),
            completed_at=str(item.get("completed_at") or ""),
            provider=provider_of(item, self.default_provider),
            model=model_of(item),
            size=size_of(video) if video else None,
            duration=duration_of(item),
            poster_url=poster,
            preview_url=None if poster else self.link(video),
            error=_text(item.get("error")),
            prompt=_text(item.get("prompt")),
        )

    def page(self, filters: Filters) -> GridPage:
        """One page of the grid: index pages read newest first until it is full (or MAX_ROUNDS)."""
        condition = "#status = :status"
        values: dict[str, str] = {":status": filters.status}
        if filters.since or filters.until:
            # ISO times sort as text; a bare date sorts before every time of that day.
            values[":since"] = filters.since.isoformat() if filters.since else "0"
            values[":until"] = (filters.until + timedelta(days=1)).isoformat() if filters.until else "9"
            condition += " AND completed_at BETWEEN :since AND :until"
        request: dict[str, Any] = {
            "IndexName": RECENT_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": PAGE_SIZE,
        }
        cards: list[Card] = []
        start: dict[str, Any] | None = filters.after
        examined = 0
        wanted = filters.provider.casefold()
        with self._lock:
            for _ in range(MAX_ROUNDS):
                this_page: dict[str, Any] = {**request, **({"ExclusiveStartKey": start} if start else {})}
                answer = self._query(this_page)
                entries = answer.get("Items", [])
                items = self.archive.items([{"task_id": e["task_id"]} for e in entries], CARD_ATTRIBUTES)
                by_id = {item["task_id"]: item for item in items}
                start = answer.get("LastEvaluatedKey")
                for position, entry in enumerate(entries):
                    examined += 1
                    item = by_id.get(entry["task_id"])
                    # The index is eventually consistent: an item may have moved on since.
                    if item is None or item.get("status") != filters.status:
                        continue
                    card = self.card(item)
                    if wanted and card.provider.casefold() != wanted:
                        continue
                    cards.append(card)
                    if len(cards) == PAGE_SIZE:
                        if position < len(entries) - 1 or start:
                            start = {k: str(entry[k]) for k in ("task_id", "status", "completed_at")}
                        break
                if len(cards) == PAGE_SIZE or not start:
                    break
        next_after = {k: str(v) for k, v in start.items()} if start else None
        return GridPage(filters, cards, next_after, examined, self.expires_at())

    def _query(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = dict(self.archive.table.query(**request))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            if error.get("Code") == "ValidationException" and RECENT_INDEX in str(error.get("Message")):
                raise BrowseError(
                    503,
                    f"the table has no {RECENT_INDEX} yet ({error.get('Message')}): deploy this version of "
                    "template.yaml (make deploy), which adds it; DynamoDB then builds it from the existing items",
                ) from None
            raise
        return answer

    def task(self, task_id: str) -> TaskView:
        with self._lock:
            try:
                item = self.archive.get(task_id)
            except OperatorError:
                raise BrowseError(404, f"no task {task_id} in this archive") from None
        assets = item.get("assets") if isinstance(item.get("assets"), dict) else {}
        assert isinstance(assets, dict)
        roles = sorted((r for r in assets if str(r).startswith("video")), key=lambda r: (len(r), r))
        media = [
            Medium(role, self.link(assets[role]), assets[role]) for role in roles if isinstance(assets[role], dict)
        ]
        media += [
            Medium(role, self.link(assets[role]), assets[role])
            for role in ("poster", "last_frame")
            if isinstance(assets.get(role), dict)
        ]
        manifest, problem = self._manifest(item.get("manifest"))
        return TaskView(item, self.card(item), media, manifest, problem, self.expires_at(), self.link_seconds)

    def _manifest(self, reference: Any) -> tuple[dict[str, Any] | None, str | None]:
        if not isinstance(reference, dict) or not reference.get("key"):
            return None, None
        request: dict[str, Any] = {"Bucket": str(reference.get("bucket")), "Key": str(reference["key"])}
        if reference.get("version_id"):
            request["VersionId"] = str(reference["version_id"])
        try:
            body = self._s3.get_object(**request)["Body"].read()
            manifest = json.loads(body)
        except ClientError as exc:
            return None, f"the manifest could not be read: {exc.response.get('Error', {}).get('Code')}"
        except ValueError:
            return None, "the manifest is not JSON"
        if not isinstance(manifest, dict):
            return None, "the manifest is not a JSON object"
        return manifest, None
