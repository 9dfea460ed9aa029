"""OpenAI's Sora through CometAPI: `GET {base}/v1/videos/{video_id}`, the OpenAI video object.

`{id, object: "video", status: queued|in_progress|completed|failed, progress: 0..100, error:
{code, message}, expires_at, ...}`, bare. The object carries no media URL: the video is served by
the API itself at `GET {base}/v1/videos/{id}/content` and its cover at `...content?variant=thumbnail`,
both with the key (the archiver sends it to the API's own host only; a redirect elsewhere goes
without it). Before completion the content endpoint answers HTTP 400; after `expires_at` it may
refuse (403), which the copier waits out for a grace period and then fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from ..family import Family, Query
from ..model import NativeDialect, Progress, Provider, Reading, progress_of, text_or_none

if TYPE_CHECKING:
    from collections.abc import Mapping

STATUSES = {
    "QUEUED": Progress.QUEUED,
    "IN_PROGRESS": Progress.RUNNING,
    "COMPLETED": Progress.SUCCEEDED,
    "FAILED": Progress.FAILED,
}


def integer_percentage(value: object) -> str | None:
    """The OpenAI object's `progress`, an integer percentage (45 -> "45%")."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
        return f"{round(value)}%"
    return text_or_none(value)


def error_of(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """`error.message` and `error.code`, when the object has an error."""
    error = obj.get("error")
    if not isinstance(error, dict):
        return None, None
    return text_or_none(error.get("message")), text_or_none(error.get("code"))


class Sora(Family):
    name = "sora"
    title = "Sora (OpenAI)"
    dialect = NativeDialect("openai-video")
    status_words: ClassVar[Mapping[str, Progress]] = STATUSES
    media_through_api = True

    def query(self, task_id: str, api: Provider) -> Query:
        return Query("GET", f"/v1/videos/{quote(task_id, safe='')}")

    def not_found(self, http_status: int, api: Provider) -> bool:
        return http_status == 404

    def is_native(self, obj: Mapping[str, Any]) -> bool:
        return obj.get("object") == "video"

    def read_native(self, obj: Mapping[str, Any], base_url: str) -> Reading:
        status = text_or_none(obj.get("status"))
        progress, note = progress_of(status, self.status_words, self.title)
        message, code = error_of(obj)
        task_id = text_or_none(obj.get("id")) or text_or_none(obj.get("task_id"))
        content = f"{base_url}/v1/videos/{quote(task_id, safe='')}/content" if task_id and base_url else None
        done = progress is Progress.SUCCEEDED and content is not None
        return Reading(
            dialect=self.dialect,
            progress=progress,
            status=status,
            video_urls=(content,) if done and content else (),
            poster_url=self.thumbnail(content) if done and content else None,
            message=message,
            failure_code=code,
            progress_text=integer_percentage(obj.get("progress")),
            note=note,
        )

    def thumbnail(self, content: str) -> str | None:
        return f"{content}?variant=thumbnail"


FAMILY = Sora()
