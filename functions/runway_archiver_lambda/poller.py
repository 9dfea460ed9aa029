"""`Poller`: what every run of the poller and the worker shares.

The settings, the task store, the feed client, the media archiver, the event publisher, the work
queue (when there is one), the wall clock the leases run on and the copy slots. `wiring.build_poller`
makes one per container; `run.Run` (one invocation) and `lifecycle.TaskLifecycle` (one task's way
through it) both work with it, so it lives apart from either.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from .config import Settings
    from .events import EventPublisher
    from .feed import FeedClient
    from .media import MediaArchiver
    from .tasks import TaskStore
    from .workqueue import WorkQueue


class Poller:
    """The parts every run works with: settings, clients, the wall clock and the copy slots."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore,
        feed: FeedClient,
        media: MediaArchiver,
        publisher: EventPublisher,
        *,
        work_queue: WorkQueue | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.work_queue = work_queue
        self.store = store
        self.feed = feed
        self.media = media
        self.publisher = publisher
        self.wall_clock = wall_clock
        # Copies hold memory (multipart buffers); polls hardly any. Bound copies separately.
        self.copy_slots = threading.BoundedSemaphore(settings.archive_concurrency)
