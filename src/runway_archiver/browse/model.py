"""`runway-archiver browse`: the archive as a page in a browser, served on 127.0.0.1 only.

A grid of ended tasks, newest outcome first (a Query on the table's `recent-index`: status, then
completed_at, read backwards one page at a time, so the first page costs the same in an archive
of ten or of a million), filters by status, provider and date, and a page per task that plays
its video and shows its manifest. Media are reached through presigned GET URLs that expire after
`LINK_SECONDS` (one hour unless --link-seconds says otherwise): nothing is made public, and the
bytes go from S3 to the browser, never through this server.

Everything shown comes from items, manifests and the provider's answers, which are not ours:
every value is HTML-escaped, the page carries a Content-Security-Policy that allows no inline
script, and a request naming another host than the loopback address is refused (a DNS-rebinding
page cannot read the archive through it).

The standard library's ThreadingHTTPServer serves it: one local user, a handful of routes, no
templates worth a dependency.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import os
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runway_archiver_lambda.clock import iso_utc
from runway_archiver_lambda.feed.family import DEFAULT_FAMILY
from runway_archiver_lambda.tasks import ARCHIVED, EXPIRED, FAILED

from ..stack.archive import Archive, OperatorError, StackResources, explain

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import boto3


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
STATIC = Path(__file__).with_name("static")
STATIC_FILES = {"browse.css": "text/css; charset=utf-8", "browse.js": "text/javascript; charset=utf-8"}
LOOPBACK = "127.0.0.1"
# A page served from a thread (the demo, the tests) stops within 50 ms of close(), not http.server's 0.5 s.
STOP_POLL_SECONDS = 0.05


class BrowseError(Exception):
    """A request the page cannot answer, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def esc(value: object) -> str:
    """Any value as HTML text or attribute content (quotes too): task data is not ours."""
    return html.escape("" if value is None else str(value), quote=True)


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
            size=_int(video.get("size")) if video else None,
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


# -- HTML ---------------------------------------------------------------------------------------
def _size(size: int | None) -> str:
    if size is None:
        return "unknown"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}" if whole >= 60 else f"{seconds:g} s"


def _when(iso: str) -> str:
    return f'<time datetime="{esc(iso)}">{esc(iso.replace("T", " ").replace("Z", " UTC"))}</time>' if iso else "—"


def _document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n"
        '<link rel="stylesheet" href="/static/browse.css">\n<script src="/static/browse.js" defer></script>\n'
        f'</head>\n<body>\n<a class="skip" href="#main">Skip to the content</a>\n{body}\n</body>\n</html>\n'
    )


def _facts(card: Card) -> str:
    provider = card.provider + (f" · {card.model}" if card.model else "")
    rows = [
        ("Provider", esc(provider)),
        ("Status", f'<span class="status status-{esc(card.status.lower())}">{esc(card.status)}</span>'),
        ("Archived" if card.status == ARCHIVED else "Ended", _when(card.completed_at)),
    ]
    rows += [("Size", esc(_size(card.size)))] if card.size is not None else []
    rows += [("Duration", esc(_duration(card.duration)))] if card.duration is not None else []
    return "<dl>" + "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows) + "</dl>"


def _picture(card: Card, *, alt_prefix: str = "Poster of") -> str:
    if card.poster_url:
        return f'<img src="{esc(card.poster_url)}" alt="{esc(alt_prefix)} task {esc(card.task_id)}" loading="lazy">'
    if card.preview_url:
        # No poster: the video's first frame stands in (the browser loads only its start).
        return (
            f'<video src="{esc(card.preview_url)}#t=0.1" preload="metadata" muted playsinline tabindex="-1" '
            f'aria-label="First frame of task {esc(card.task_id)}"></video>'
        )
    return f'<div class="placeholder" role="img" aria-label="No picture for task {esc(card.task_id)}">no picture</div>'


def render_grid(browser: Browser, page: GridPage) -> str:
    filters = page.filters
    options = "".join(
        f'<option value="{s}"{" selected" if s == filters.status else ""}>{s.title()}</option>' for s in BROWSABLE
    )
    providers = sorted({browser.default_provider, *(card.provider for card in page.cards)})
    datalist = "".join(f'<option value="{esc(p)}"></option>' for p in providers)
    form = (
        '<form class="filters" method="get" action="/" role="search" aria-label="Filter the archive">'
        f'<p><label for="status">Status</label><select id="status" name="status">{options}</select></p>'
        f'<p><label for="provider">Provider</label><input id="provider" name="provider" list="providers" '
        f'value="{esc(filters.provider)}" autocomplete="off" placeholder="any"><datalist id="providers">{datalist}'
        "</datalist></p>"
        f'<p><label for="since">Ended from</label><input type="date" id="since" name="since" '
        f'value="{esc(filters.since.isoformat() if filters.since else "")}"></p>'
        f'<p><label for="until">Ended until</label><input type="date" id="until" name="until" '
        f'value="{esc(filters.until.isoformat() if filters.until else "")}"></p>'
        '<p class="buttons"><button type="submit">Filter</button> <a href="/">Clear</a></p></form>'
    )
    cards = "".join(
        f'<li class="card" data-task-id="{esc(card.task_id)}">'
        f'<a class="picture" href="/task/{esc(quote(card.task_id, safe=""))}">{_picture(card)}</a>'
        f'<h2><a href="/task/{esc(quote(card.task_id, safe=""))}">{esc(card.task_id)}</a></h2>'
        + (f'<p class="prompt">{esc(card.prompt)}</p>' if card.prompt else "")
        + _facts(card)
        + (f'<p class="error">{esc(card.error)}</p>' if card.error else "")
        + "</li>"
        for card in page.cards
    )
    shown = len(page.cards)
    what = f"{shown} {filters.status.lower()} task{'s' if shown != 1 else ''}"
    narrowed = " matching the filters" if filters.provider or filters.since or filters.until else ""
    summary = (
        f"{what}{narrowed} on this page, newest first" if shown else f"No {filters.status.lower()} tasks{narrowed}."
    )
    if filters.provider and page.next_after:  # a page that stopped looking before the end
        summary += f" ({page.examined} looked at for this page; Older tasks looks further.)"
    older = f'<a rel="next" href="/?{esc(filters.query(page.next_after))}">Older tasks</a>'
    more = f'<nav aria-label="More tasks">{older}</nav>' if page.next_after else ""
    if filters.after:
        more = f'<nav aria-label="Newer tasks"><a href="/?{esc(filters.query())}">Newest tasks</a></nav>' + more
    body = (
        f"<header><h1>Archive <span>{esc(browser.stack_name)}</span></h1>"
        f"<p>Links to media work until {_when(iso_utc(page.expires_at))} (presigned, "
        f"{browser.link_seconds // 60} min); reload the page for fresh ones.</p></header>"
        f'<main id="main">{form}<p id="summary" role="status">{esc(summary)}</p>'
        f'<ul class="grid" aria-label="Tasks">{cards}</ul>{more}</main>'
    )
    return _document(f"Archive {browser.stack_name}", body)


def _json_block(value: Any) -> str:
    return f"<pre><code>{esc(json.dumps(value, indent=2, sort_keys=True, default=str))}</code></pre>"


def _asset_rows(media: list[Medium]) -> str:
    rows = []
    for medium in media:
        a = medium.asset
        rows.append(
            f'<tr><th scope="row">{esc(medium.role)}</th><td data-label="Size">{esc(_size(_int(a.get("size"))))}</td>'
            f'<td data-label="Type">{esc(a.get("content_type"))}</td>'
            f'<td data-label="SHA-256"><code>{esc(a.get("sha256"))}</code></td>'
            f'<td data-label="S3 checksum"><code>{esc(a.get("checksum_sha256"))}</code></td>'
            f'<td data-label="S3 version"><code>{esc(a.get("version_id"))}</code></td></tr>'
        )
    return "".join(rows)


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _players(view: TaskView) -> str:
    videos = [m for m in view.media if m.role.startswith("video")]
    if not videos:
        return '<p class="placeholder">No video was archived for this task.</p>'
    poster = view.card.poster_url
    parts = []
    for number, medium in enumerate(videos):
        label = f"Video of task {view.card.task_id}" + (f" ({medium.role})" if number else "")
        ident = f"link-{number}"
        parts.append(
            f'<figure><video id="video-{number}" controls preload="auto" playsinline src="{esc(medium.url)}"'
            + (f' poster="{esc(poster)}"' if poster and number == 0 else "")
            + f' aria-label="{esc(label)}">Your browser cannot play this video: '
            f'<a href="{esc(medium.url)}">download it</a>.</video>'
            f'<figcaption><label for="{ident}">Link to {esc(medium.role)} (works until '
            f"{_when(iso_utc(view.expires_at))})</label>"
            f'<span class="copy"><input id="{ident}" type="text" readonly value="{esc(medium.url)}">'
            f'<button type="button" data-copy="{ident}">Copy link</button></span>'
            f'<span class="copied" role="status" aria-live="polite" data-copied-for="{ident}"></span></figcaption>'
            "</figure>"
        )
    return "".join(parts)


def _manifest_section(view: TaskView) -> str:
    reference = view.item.get("manifest") if isinstance(view.item.get("manifest"), dict) else None
    if view.manifest is None:
        said = view.manifest_problem or "This task has no manifest (only archived tasks have one)."
        return f'<section aria-labelledby="manifest"><h2 id="manifest">Manifest</h2><p>{esc(said)}</p></section>'
    manifest = view.manifest
    assets = manifest.get("assets") if isinstance(manifest.get("assets"), dict) else {}
    assert isinstance(assets, dict)
    checksum_rows = "".join(
        f'<tr><th scope="row">{esc(role)}</th><td data-label="SHA-256"><code>{esc(a.get("sha256"))}</code></td>'
        f'<td data-label="S3 checksum"><code>{esc(a.get("checksum_sha256"))}</code></td>'
        f'<td data-label="S3 version"><code>{esc(a.get("version_id"))}</code></td></tr>'
        for role, a in sorted(assets.items())
        if isinstance(a, dict)
    )
    facts = [
        ("Manifest", f"s3://{(reference or {}).get('bucket')}/{(reference or {}).get('key')}"),
        ("Manifest version", manifest.get("manifest_version")),
        ("Manifest's S3 version", (reference or {}).get("version_id")),
        ("Manifest's SHA-256", (reference or {}).get("sha256")),
        ("Archived at", manifest.get("archived_at")),
        ("Answered by", f"{manifest.get('provider_name')} ({manifest.get('dialect')})"),
        ("Event", f"{manifest.get('event_type')} {manifest.get('event_id')}"),
    ]
    return (
        '<section aria-labelledby="manifest"><h2 id="manifest">Manifest</h2><dl class="wide">'
        + "".join(f"<dt>{esc(name)}</dt><dd><code>{esc(value)}</code></dd>" for name, value in facts)
        + '</dl><div class="scroll"><table class="checksums"><caption>Checksums and versions, as the manifest '
        'records them</caption><thead><tr><th scope="col">File</th><th scope="col">SHA-256 (hex)</th>'
        '<th scope="col">S3 checksum</th><th scope="col">S3 version</th></tr></thead>'
        f"<tbody>{checksum_rows}</tbody></table></div>"
        f"<h3>The provider's answer</h3>{_json_block(manifest.get('provider_answer'))}"
        f"<details><summary>The whole manifest</summary>{_json_block(manifest)}</details></section>"
    )


def render_task(browser: Browser, view: TaskView) -> str:
    card = view.card
    item = view.item
    extra = [
        ("Prompt", item.get("prompt")),
        ("Prompt (English)", item.get("prompt_en")),
        ("Answered in", item.get("dialect")),
        ("Error", item.get("error")),
    ]
    details = "".join(f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in extra if value)
    files = (
        '<section aria-labelledby="files"><h2 id="files">Files</h2><div class="scroll"><table><thead><tr>'
        '<th scope="col">File</th><th scope="col">Size</th><th scope="col">Type</th><th scope="col">SHA-256</th>'
        '<th scope="col">S3 checksum</th><th scope="col">S3 version</th></tr></thead>'
        f"<tbody>{_asset_rows(view.media)}</tbody></table></div></section>"
        if view.media
        else ""
    )
    body = (
        f'<header><p><a href="/">← Archive {esc(browser.stack_name)}</a></p>'
        f"<h1>Task <span>{esc(card.task_id)}</span></h1></header>"
        f'<main id="main" class="task">{_players(view)}{_facts(card)}'
        + (f'<dl class="wide">{details}</dl>' if details else "")
        + f"{files}{_manifest_section(view)}</main>"
    )
    return _document(f"Task {card.task_id}", body)


def render_error(status: int, message: str) -> str:
    body = (
        f'<header><p><a href="/">← The archive</a></p><h1>{esc(status)} {esc(HTTPStatus(status).phrase)}</h1></header>'
        f'<main id="main"><p class="error">{esc(message)}</p></main>'
    )
    return _document(f"{status} {HTTPStatus(status).phrase}", body)


# -- HTTP ---------------------------------------------------------------------------------------
def _origins(markup: str) -> str:
    """The origins of the presigned links on a page: the only ones its images and videos may load from."""
    found: set[str] = set()
    for attribute in ('src="', 'poster="'):
        for chunk in markup.split(attribute)[1:]:
            parts = urlsplit(html.unescape(chunk.split('"', 1)[0]))
            if parts.scheme in ("http", "https") and parts.netloc:
                found.add(f"{parts.scheme}://{parts.netloc}")
    return " ".join(sorted(found))


def security_headers(markup: str) -> dict[str, str]:
    origins = _origins(markup)
    media = origins or "'none'"
    policy = (
        "default-src 'none'; style-src 'self'; script-src 'self'; "
        f"img-src 'self' {origins}; media-src {media}; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
    }


class BrowseServer:
    """The page on 127.0.0.1:port (0: a free port), served from a thread or in the foreground."""

    def __init__(self, browser: Browser, port: int = 0, *, log: Callable[[str], None] | None = None) -> None:
        self.browser = browser
        self.log = log or (lambda line: print(line, file=sys.stderr))
        try:
            self._server = ThreadingHTTPServer((LOOPBACK, port), _handler_for(self))
        except OSError as exc:
            raise OperatorError(f"cannot listen on {LOOPBACK}:{port} ({exc.strerror}): pass another --port") from None
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        self._server.serve_forever(poll_interval)

    def __enter__(self) -> BrowseServer:
        self._thread = threading.Thread(
            target=self.serve_forever, args=(STOP_POLL_SECONDS,), name="browse", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def respond(self, path: str, host: str | None) -> tuple[int, str, bytes, dict[str, str]]:
        """Status, content type, body and headers for a GET of `path`."""
        allowed = {f"{LOOPBACK}:{self.port}", f"localhost:{self.port}"}
        if host not in allowed:
            # A page elsewhere that points a name at 127.0.0.1 (DNS rebinding) sends its own Host.
            return self._page(421, render_error(421, "this page answers only at its loopback address"))
        parts = urlsplit(path)
        route = parts.path
        if route.startswith("/static/") and route.removeprefix("/static/") in STATIC_FILES:
            name = route.removeprefix("/static/")
            headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
            return 200, STATIC_FILES[name], (STATIC / name).read_bytes(), headers
        try:
            if route == "/":
                filters = Filters.parse(parse_qs(parts.query))
                return self._page(200, render_grid(self.browser, self.browser.page(filters)))
            if route.startswith("/task/") and len(route) > len("/task/"):
                view = self.browser.task(unquote(route.removeprefix("/task/")))
                return self._page(200, render_task(self.browser, view))
            raise BrowseError(404, "no such page")
        except BrowseError as exc:
            return self._page(exc.status, render_error(exc.status, str(exc)))
        except (ClientError, BotoCoreError) as exc:
            self.log(f"runway-archiver browse: {explain(exc)}")
            return self._page(502, render_error(502, f"AWS answered: {explain(exc)}"))

    @staticmethod
    def _page(status: int, markup: str) -> tuple[int, str, bytes, dict[str, str]]:
        return status, "text/html; charset=utf-8", markup.encode(), security_headers(markup)


def _handler_for(server: BrowseServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "runway-archiver-browse"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            return  # a line per request would bury the one line that says where the page is

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, *, send_body: bool) -> None:
            status, content_type, body, headers = server.respond(self.path, self.headers.get("Host"))
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(body)

    return Handler


def serve(browser: Browser, *, port: int = 0, open_browser: bool = True, as_json: bool = False) -> int:
    """Serve the page until Ctrl-C (or SIGTERM); open it in a browser when there is one."""
    import signal

    server = BrowseServer(browser, port)
    where = {"url": server.url, "stack": browser.stack_name, "link_seconds": browser.link_seconds}
    line = (
        f"browsing stack {browser.stack_name} at {server.url} (only from this machine; media links work "
        f"{browser.link_seconds} s from each page load). Ctrl-C stops."
    )
    if as_json:
        print(json.dumps(where), flush=True)
    else:
        print(line, flush=True)
    if open_browser and not _open(server.url):
        print("no browser found here: open the address above in one", file=sys.stderr, flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.close()
    return 0


def _open(url: str) -> bool:
    """Open the page in the user's browser, if this machine has a graphical one (a terminal
    browser would take over the terminal the server prints to)."""
    graphical = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if not graphical:
        return False
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def serve_stack(session: boto3.session.Session, stack_name: str, *, open_browser: bool = True) -> int:
    """The page on a stack found by name (the demo's: `runway-archiver demo --browse`)."""
    resources = StackResources.find(session, stack_name)
    return serve(Browser.for_stack(session, resources, LINK_SECONDS), open_browser=open_browser)
