"""X-Ray tracing through Powertools Tracer, set up on a container's first invocation.

Creating a `Tracer` imports and configures the X-Ray SDK (about as long as importing boto3): done
at import time, every cold start pays it before the handler even exists, and so does every tool
that imports the handler. Done on the first call it is paid once per container, only when tracing
is on (POWERTOOLS_TRACE_DISABLED unset), and the subsegments are the same.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Tracer  # the class is cheap; making one imports the X-Ray SDK

if TYPE_CHECKING:
    from collections.abc import Callable

Handler = TypeVar("Handler", bound="Callable[[Any, Any], Any]")


def tracing_disabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true")


def traced(handler: Handler) -> Handler:
    """`Tracer().capture_lambda_handler(handler, capture_response=False)`, the Tracer made on first call."""
    wrapped: Callable[[Any, Any], Any] | None = None

    @functools.wraps(handler)
    def call(event: Any, context: Any) -> Any:
        nonlocal wrapped
        if wrapped is None:
            if tracing_disabled():
                wrapped = handler
            else:
                wrapped = Tracer().capture_lambda_handler(handler, capture_response=False)
        return wrapped(event, context)

    return call  # type: ignore[return-value]
