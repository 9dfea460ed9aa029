"""The browse page's HTML: the grid, a task's page, an error page. Everything shown comes from items,
manifests and the provider's answers, which are not ours: every value is escaped (`esc`), and no
script is inline (the server's Content-Security-Policy allows none).
"""

from __future__ import annotations

import html
import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from runway_archiver_lambda.clock import iso_utc
from runway_archiver_lambda.tasks import ARCHIVED

from .model import BROWSABLE, size_of

if TYPE_CHECKING:
    from .model import Browser, Card, GridPage, Medium, TaskView


def esc(value: object) -> str:
    """Any value as HTML text or attribute content (quotes too): task data is not ours."""
    return html.escape("" if value is None else str(value), quote=True)


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
            f'<tr><th scope="row">{esc(medium.role)}</th><td data-label="Size">{esc(_size(size_of(a)))}</td>'
            f'<td data-label="Type">{esc(a.get("content_type"))}</td>'
            f'<td data-label="SHA-256"><code>{esc(a.get("sha256"))}</code></td>'
            f'<td data-label="S3 checksum"><code>{esc(a.get("checksum_sha256"))}</code></td>'
            f'<td data-label="S3 version"><code>{esc(a.get("version_id"))}</code></td></tr>'
        )
    return "".join(rows)


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
