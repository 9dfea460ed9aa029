"""MiniMax (Hailuo) through CometAPI: `GET {base}/minimax/v1/query/video_generation?task_id={id}`.

MiniMax's object, `{task_id, status: Preparing|Queueing|Processing|Success|Fail, file_id,
base_resp: {status_code, status_msg}}` (a non-zero `status_code` fails the task whatever the
status says), or the gateway's task envelope with it nested (where `file.download_url` may already
be filled, and `fail_reason` may hold the file id on success: it is read as a reason only on
failure). The answer has no media URL: the file is resolved with a second authenticated call,
`GET {base}/minimax/v1/files/retrieve?file_id=...` (the key, to the API's host), whose
`file.download_url` is a public CDN URL fetched without the key ("valid for 9 hours").
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

from ..family import Family, Query
from ..model import FeedError, FeedErrorKind, NativeDialect, Progress, Provider, Reading, progress_of, text_or_none

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..model import FeedAnswer

STATUSES = {
    "PREPARING": Progress.QUEUED,
    "QUEUEING": Progress.QUEUED,
    "PROCESSING": Progress.RUNNING,
    "SUCCESS": Progress.SUCCEEDED,
    "FAIL": Progress.FAILED,
    "FAILED": Progress.FAILED,  # one reseller's spelling
}
RETRIEVE_PATH = "/minimax/v1/files/retrieve"


def _base_resp(obj: Mapping[str, Any]) -> tuple[int, str | None]:
    resp = obj.get("base_resp")
    if not isinstance(resp, dict):
        return 0, None
    code = resp.get("status_code")
    return (code if isinstance(code, int) and not isinstance(code, bool) else 0), text_or_none(resp.get("status_msg"))


class MiniMax(Family):
    name = "minimax"
    title = "MiniMax (Hailuo)"
    dialect = NativeDialect("minimax-task")
    status_words: ClassVar[Mapping[str, Progress]] = STATUSES

    def query(self, task_id: str, api: Provider) -> Query:
        return Query("GET", f"/minimax/v1/query/video_generation?task_id={quote(task_id, safe='')}")

    def is_native(self, obj: Mapping[str, Any]) -> bool:
        return "base_resp" in obj or "file_id" in obj

    def read_native(self, obj: Mapping[str, Any], base_url: str) -> Reading:
        status = text_or_none(obj.get("status"))
        progress, note = progress_of(status, STATUSES, self.title)
        code, message = _base_resp(obj)
        if code != 0:
            progress, note = Progress.FAILED, ""
            message = f"{message or 'refused'} ({code})"
        elif progress is Progress.FAILED:
            message = message if message and message.lower() != "success" else "task failed"
        else:
            message = None
        found = obj.get("file")
        file: Mapping[str, Any] = found if isinstance(found, dict) else {}
        download = text_or_none(file.get("download_url"))
        file_id = text_or_none(str(obj["file_id"])) if obj.get("file_id") not in (None, "") else None
        video = download or (
            f"{base_url}{RETRIEVE_PATH}?file_id={quote(file_id, safe='')}" if file_id and base_url else None
        )
        return Reading(
            dialect=self.dialect,
            progress=progress,
            status=status,
            video_urls=(video,) if video and progress is Progress.SUCCEEDED else (),
            message=message,
            note=note,
        )

    def resolve_media(self, answer: FeedAnswer, ask: Callable[[str], Mapping[str, Any]]) -> FeedAnswer:
        """A files/retrieve address becomes the file's `download_url` (the second, authenticated call)."""
        urls = []
        for url in answer.video_urls:
            if urlsplit(url).path != RETRIEVE_PATH:
                urls.append(url)
                continue
            body = ask(url)
            code, message = _base_resp(body)
            found = body.get("file")
            file: Mapping[str, Any] = found if isinstance(found, dict) else {}
            download = text_or_none(file.get("download_url"))
            if code != 0 or not download:
                file_id = parse_qs(urlsplit(url).query).get("file_id", ["?"])[0][:40]
                raise FeedError(
                    FeedErrorKind.MALFORMED,
                    f"files/retrieve for file {file_id} gave no download_url: {message or 'no file'} ({code})",
                )
            urls.append(download)
        return replace(answer, video_urls=tuple(urls))


FAMILY = MiniMax()
