"""Kling (Kuaishou) through CometAPI: `GET {base}/kling/v1/videos/text2video/{task_id}`.

The answer is Kling's own object, `{code: 0, message, data: {task_id, task_status: submitted|
processing|succeed|failed, task_status_msg, task_result: {videos: [{url, duration}]}}}` (`code` 0
acknowledges the query, not the task), or the gateway's task envelope with that object nested in
`data` (CometAPI's Omni page). Every `videos[].url` is archived (the first as `video`); there is no
cover, last frame or progress. Media: public CDN URLs, fetched without a key; their lifetime is not
documented ("download or copy the final video URL promptly").

The query path repeats the creation endpoint; this module asks the `text2video` one (the gateway's
own routes are text2video and image2video).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ..family import Family, Query
from ..model import NativeDialect, Progress, Provider, Reading, progress_of, text_or_none

if TYPE_CHECKING:
    from collections.abc import Mapping

STATUSES = {
    "SUBMITTED": Progress.QUEUED,
    "PROCESSING": Progress.RUNNING,
    "SUCCEED": Progress.SUCCEEDED,
    "FAILED": Progress.FAILED,
}


class Kling(Family):
    name = "kling"
    title = "Kling"
    dialect = NativeDialect("kling-task")
    status_words: ClassVar[Mapping[str, Progress]] = STATUSES
    success_codes = frozenset({"0", "200", "success"})

    def query(self, task_id: str, api: Provider) -> Query:
        return Query("GET", f"/kling/v1/videos/text2video/{quote(task_id, safe='')}")

    def is_native(self, obj: Mapping[str, Any]) -> bool:
        return "task_status" in obj or "task_result" in obj

    def read_native(self, obj: Mapping[str, Any], base_url: str) -> Reading:
        inner = obj.get("data")
        if not self.is_native(obj) and isinstance(inner, dict):
            obj = inner  # the gateway may nest Kling's whole answer, `{code, message, data}`, in its envelope
        status = text_or_none(obj.get("task_status"))
        progress, note = progress_of(status, STATUSES, "Kling")
        result = obj.get("task_result")
        videos = result.get("videos") if isinstance(result, dict) else None
        urls = tuple(url for url in (text_or_none(v.get("url")) for v in (videos or []) if isinstance(v, dict)) if url)
        return Reading(
            dialect=self.dialect,
            progress=progress,
            status=status,
            video_urls=urls,
            message=text_or_none(obj.get("task_status_msg")),
            note=note,
        )


FAMILY = Kling()
