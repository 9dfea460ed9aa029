"""Google's Veo through CometAPI: the same route and object as Sora's (`GET {base}/v1/videos/{id}`).

`{id, task_id, object: "video", status: queued|in_progress|completed|failed, progress}`; the video
comes from the authenticated content endpoint `GET {base}/v1/videos/{id}/content`, with the key
(the gateway fetches it from Google). No cover is documented, so none is asked for; a failed
object usually has no reason (`error.message` is read when present).
"""

from __future__ import annotations

from ..model import NativeDialect
from .sora import Sora


class Veo(Sora):
    name = "veo"
    title = "Veo (Google)"
    dialect = NativeDialect("openai-video")

    def thumbnail(self, content: str) -> str | None:
        return None  # documented for Sora only


FAMILY = Veo()
