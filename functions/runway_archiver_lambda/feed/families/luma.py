"""Luma (Dream Machine) through CometAPI: `GET {base}/dream-machine/v1/generations/{task_id}`.

Two shapes answer on that path, both read: the "own format" CometAPI's page lists (`state:
pending|processing|completed|failed`, `video {url, download_url}`, `video_raw {url}`, `thumbnail
{url}`, `last_frame {url}`, `failure_reason`) and Luma's official Generation object (`state:
queued|dreaming|completed|failed`, `assets {video, thumbnail}`, `failure_reason` or `state_reason`).
The video is `video.download_url`, else `video.url`, else `assets.video`; the un-watermarked
`video_raw.url` is archived as a further output; the thumbnail is the cover. Media: public CDN
URLs, fetched without a key; their lifetime is not documented. No progress.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ..family import Family, Query
from ..model import NativeDialect, Progress, Provider, Reading, first, progress_of, text_or_none

if TYPE_CHECKING:
    from collections.abc import Mapping

STATUSES = {
    "PENDING": Progress.QUEUED,
    "QUEUED": Progress.QUEUED,
    "PROCESSING": Progress.RUNNING,
    "DREAMING": Progress.RUNNING,
    "COMPLETED": Progress.SUCCEEDED,
    "FAILED": Progress.FAILED,
}


def _url(obj: Mapping[str, Any], name: str, *fields: str) -> str | None:
    """`obj[name]` when it is a URL, else the first of `fields` inside it."""
    value = obj.get(name)
    if isinstance(value, str):
        return text_or_none(value)
    if isinstance(value, dict):
        return first(text_or_none(value.get(f)) for f in fields)
    return None


class Luma(Family):
    name = "luma"
    title = "Luma (Dream Machine)"
    dialect = NativeDialect("luma-generation")
    status_words: ClassVar[Mapping[str, Progress]] = STATUSES

    def query(self, task_id: str, api: Provider) -> Query:
        return Query("GET", f"/dream-machine/v1/generations/{quote(task_id, safe='')}")

    def not_found(self, http_status: int, api: Provider) -> bool:
        return http_status == 404

    def is_native(self, obj: Mapping[str, Any]) -> bool:
        return "state" in obj

    def read_native(self, obj: Mapping[str, Any], base_url: str) -> Reading:
        status = text_or_none(obj.get("state"))
        progress, note = progress_of(status, STATUSES, self.title)
        found = obj.get("assets")
        assets: Mapping[str, Any] = found if isinstance(found, dict) else {}
        video = _url(obj, "video", "download_url", "url") or _url(assets, "video", "url")
        raw = _url(obj, "video_raw", "download_url", "url")
        urls = tuple(u for u in (video, raw) if u) if video else ()
        return Reading(
            dialect=self.dialect,
            progress=progress,
            status=status,
            video_urls=tuple(dict.fromkeys(urls)),
            poster_url=_url(obj, "thumbnail", "url") or _url(assets, "thumbnail", "url"),
            last_frame_url=_url(obj, "last_frame", "url"),
            message=text_or_none(obj.get("failure_reason")) or text_or_none(obj.get("state_reason")),
            note=note,
        )


FAMILY = Luma()
