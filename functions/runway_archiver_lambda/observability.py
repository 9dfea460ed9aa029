"""Logs, metrics and traces of the three functions, in one place.

One `logger` for all the Lambda code (no child loggers: Powertools names a child after the
service at import time, and one named after another service than the handler's is orphaned).
The service name is read once, here: POWERTOOLS_SERVICE_NAME (the template sets it), else the
template's value. `entry_point` gives a handler its logging context, tracing and metrics flush.

The `Metrics` object and the X-Ray `Tracer` are made on a container's first invocation, when the
function's environment is certain: Metrics reads its namespace when made, and making a Tracer
imports and configures the X-Ray SDK (about as long as importing boto3), which done at import
time every cold start and every tool that imports a handler would pay. Done on the first call it
is paid once per container, only when tracing is on (POWERTOOLS_TRACE_DISABLED unset).

The metrics a run emits are declared on the counters of its summary (`summary.py`), which emits
them through `metrics()`.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from collections.abc import Callable

Handler = TypeVar("Handler", bound="Callable[[Any, Any], Any]")

SERVICE_NAME = os.environ.get("POWERTOOLS_SERVICE_NAME", "").strip() or "runway-archiver"
logger = Logger(service=SERVICE_NAME)


def tracing_disabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true")


@functools.cache
def metrics() -> Metrics:
    """The functions' Metrics, made on first use: its namespace and its `service` dimension (the
    stack's name, one series per stack) are read from the function's environment then."""
    return Metrics(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "").strip() or SERVICE_NAME)


def entry_point(handler: Callable[[Any, Any], Any]) -> Callable[..., Any]:
    """A Lambda handler with the logger's Lambda context, tracing and the metrics flush."""

    def configured() -> Callable[[Any, Any], Any]:
        # The function's POWERTOOLS_LOG_LEVEL, read on its first call as the metrics' namespace is
        # (a tool may import this module before it sets the function's environment).
        logger.setLevel(None)
        return handler

    inner = _metered(_on_first_call(handler, configured))
    return logger.inject_lambda_context(log_event=False, clear_state=True)(traced(inner))


def traced(handler: Handler) -> Handler:
    """`Tracer().capture_lambda_handler(handler, capture_response=False)`, the Tracer made on first call."""
    return _on_first_call(
        handler,
        lambda: handler if tracing_disabled() else Tracer().capture_lambda_handler(handler, capture_response=False),
    )


def _metered(handler: Handler) -> Handler:
    """`metrics().log_metrics(handler)`, the Metrics made on first call."""
    return _on_first_call(handler, lambda: metrics().log_metrics(handler))


def _on_first_call(handler: Handler, wrap: Callable[[], Callable[[Any, Any], Any]]) -> Handler:
    wrapped: Callable[[Any, Any], Any] | None = None

    @functools.wraps(handler)
    def call(event: Any, context: Any) -> Any:
        nonlocal wrapped
        if wrapped is None:
            wrapped = wrap()
        return wrapped(event, context)

    return call  # type: ignore[return-value]


# -- the metrics -----------------------------------------------------------------------------------
def emit_callback_metric(outcome: str) -> None:
    """One callback answered, by its outcome (accepted, unknown, unauthorized...)."""
    emitted = metrics()
    emitted.add_dimension(name="outcome", value=outcome)
    emitted.add_metric(name="Callbacks", unit=MetricUnit.Count, value=1)
