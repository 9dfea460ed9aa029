"""An http.server served from a daemon thread and stopped promptly: the feed emulator's servers,
the local function URL, and the browse page when the demo or a test serves it."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from socketserver import BaseServer

# How often the thread looks for a stop request: http.server's own 0.5 s made every stop wait up to
# that long (the emulator's three servers, one after the other, 1.2 s: most of a test's teardown);
# a wake-up every 50 ms costs nothing.
STOP_POLL_SECONDS = 0.05


def serve_in_background(server: BaseServer, name: str) -> threading.Thread:
    """`server.serve_forever()` in a daemon thread, started; `server.shutdown()` returns within 50 ms."""
    thread = threading.Thread(target=server.serve_forever, args=(STOP_POLL_SECONDS,), name=name, daemon=True)
    thread.start()
    return thread
