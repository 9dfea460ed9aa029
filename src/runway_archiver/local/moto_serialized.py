"""moto's server with requests handled one at a time.

moto's backends keep their state in plain dicts without locks, so two concurrent conditional
writes to one DynamoDB item could both pass their condition. Real DynamoDB never allows that, and
the archiver's claims depend on it. Serialising requests gives the emulation the same guarantee;
connections are still accepted concurrently. DynamoDB is normally served by DynamoDB Local, atomic
by itself; then this guards only the services left in moto (and DynamoDB again with
RUNWAY_ARCHIVER_DYNAMODB=moto).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


BUSY_PATH = "/_serialized/busy"  # GET: {"busy_seconds", "requests"} so far (benchmarks read it)


def serialized_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()
    busy = {"busy_seconds": 0.0, "requests": 0}

    def handle(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == BUSY_PATH:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(busy).encode()]
        with lock:
            started = time.perf_counter()
            try:
                return list(app(environ, start_response))  # the whole response, inside the lock
            finally:
                busy["busy_seconds"] += time.perf_counter() - started
                busy["requests"] += 1

    return handle


def _quicker_sqs_receives() -> None:
    """The same answers from moto's SQS, without its O(queue depth) work per message received.

    moto 5 checks each received message's retention by recomputing every attribute of the queue,
    ApproximateNumberOfMessages included (a pass over all messages), and reads the clock through
    datetime arithmetic for each message it looks at: a receive from a queue of 3,000 messages
    took 2.5 s here. Real SQS answers in milliseconds whatever the depth.
    """
    import moto.sqs.models as sqs_models

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else _original_unix_time_millis(dt)

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > time.time())

    _original_unix_time_millis = sqs_models.unix_time_millis  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = unix_time_millis  # type: ignore[attr-defined]
    sqs_models.SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


class _PromptRequestHandler(MotoRequestHandler):
    # Werkzeug writes the status line, headers and body separately: with Nagle's algorithm on,
    # a write waits for the client's delayed ACK (up to 40 ms on Linux), which AWS never adds.
    disable_nagle_algorithm = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    _quicker_sqs_receives()
    run_simple(args.host, args.port, serialized_app(), threaded=True, request_handler=_PromptRequestHandler)


if __name__ == "__main__":
    main()
