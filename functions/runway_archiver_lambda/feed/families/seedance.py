"""ByteDance's Seedance (Doubao, Volcengine Ark) through CometAPI, on either of its two documented routes.

- Ark's own task (`GET {base}/volc/v3/contents/generations/tasks/{id}`): `{id, status: queued|
  running|succeeded|failed (pending, processing, cancelled also met), content: {video_url,
  last_frame_url?}, error: {code, message}}`;
- the gateway's shared video route (`GET {base}/v1/videos/{id}`, for ids `task_...` that
  `POST /v1/videos` returned): `{id, object: "video", status: SUBMITTED|IN_PROGRESS|SUCCESS|FAILED|
  ERROR (or queued|in_progress|completed|failed), progress, video_url}`, the URL also met at
  `result.video_url` or `metadata.url`.

The route is chosen by the id: a gateway id (`task_...`) goes to `/v1/videos`, any other to Ark's
path. Media: public signed URLs ("time-limited"), fetched without a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ..family import Family, Query
from ..model import NativeDialect, Progress, Provider, Reading, first, progress_of, text_or_none
from .sora import error_of, integer_percentage

if TYPE_CHECKING:
    from collections.abc import Mapping

STATUSES = {
    "QUEUED": Progress.QUEUED,
    "PENDING": Progress.QUEUED,
    "SUBMITTED": Progress.QUEUED,
    "RUNNING": Progress.RUNNING,
    "PROCESSING": Progress.RUNNING,
    "IN_PROGRESS": Progress.RUNNING,
    "SUCCEEDED": Progress.SUCCEEDED,
    "SUCCESS": Progress.SUCCEEDED,
    "COMPLETED": Progress.SUCCEEDED,
    "FAILED": Progress.FAILED,
    "ERROR": Progress.FAILED,
    "CANCELLED": Progress.FAILED,
}
GATEWAY_ID_PREFIX = "task_"


def _inside(obj: Mapping[str, Any], name: str, field: str) -> str | None:
    inner = obj.get(name)
    return text_or_none(inner.get(field)) if isinstance(inner, dict) else None


class Seedance(Family):
    name = "seedance"
    title = "Seedance (ByteDance)"
    dialect = NativeDialect("seedance-task")
    status_words: ClassVar[Mapping[str, Progress]] = STATUSES

    def query(self, task_id: str, api: Provider) -> Query:
        if task_id.startswith(GATEWAY_ID_PREFIX):
            return Query("GET", f"/v1/videos/{quote(task_id, safe='')}")
        return Query("GET", f"/volc/v3/contents/generations/tasks/{quote(task_id, safe='')}")

    def not_found(self, http_status: int, api: Provider) -> bool:
        return http_status == 404

    def is_native(self, obj: Mapping[str, Any]) -> bool:
        return obj.get("object") == "video" or "content" in obj or "model" in obj

    def read_native(self, obj: Mapping[str, Any], base_url: str) -> Reading:
        status = text_or_none(obj.get("status"))
        progress, note = progress_of(status, STATUSES, self.title)
        message, code = error_of(obj)
        if progress is Progress.FAILED and status and status.upper() == "ERROR" and not message:
            message = "an internal error prevented completion (ERROR)"
        if status and status.upper() == "CANCELLED":
            message = f"cancelled: {message}" if message else "cancelled"
        video = first(
            (
                _inside(obj, "content", "video_url"),
                text_or_none(obj.get("video_url")),
                _inside(obj, "result", "video_url"),
                _inside(obj, "metadata", "url"),
            )
        )
        return Reading(
            dialect=self.dialect,
            progress=progress,
            status=status,
            video_urls=(video,) if video else (),
            last_frame_url=_inside(obj, "content", "last_frame_url"),
            message=message,
            failure_code=code,
            progress_text=integer_percentage(obj.get("progress")),
            note=note,
        )


FAMILY = Seedance()
