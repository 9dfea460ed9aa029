"""moto's server with requests handled one at a time.

moto's backends keep their state in plain dicts without locks, so two concurrent conditional
writes to one DynamoDB item could both pass their condition. Real DynamoDB never allows that, and
the archiver's claims depend on it. Serialising requests gives the emulation the same guarantee;
connections are still accepted concurrently.
"""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


def serialized_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            return list(app(environ, start_response))  # the whole response, inside the lock

    return handle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    run_simple(args.host, args.port, serialized_app(), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
