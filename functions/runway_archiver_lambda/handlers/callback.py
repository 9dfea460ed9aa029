"""Lambda entry point of the callback function, behind a Lambda function URL."""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import LambdaFunctionUrlResolver, Response

from ..callbacks import PROVIDER_PARAMETER, TOKEN_HEADER, TOKEN_PARAMETER, Callbacks, Reply
from ..observability import emit_callback_metric, entry_point, logger
from ..wiring import build_callbacks

__all__ = ["lambda_handler", "logger"]

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

app = LambdaFunctionUrlResolver()

_callbacks: Callbacks | None = None


@app.post("/")
def callback() -> Response[str]:
    event = app.current_event
    parameters = event.query_string_parameters or {}
    presented = event.headers.get(TOKEN_HEADER) or parameters.get(TOKEN_PARAMETER)
    assert _callbacks is not None
    try:
        body = (
            base64.b64decode(event.body or "", validate=True)
            if event.is_base64_encoded
            else (event.body or "").encode()
        )
    except binascii.Error:
        reply = Reply(400, "malformed", "body is not valid base64")
    else:
        reply = _callbacks.accept(presented, body, parameters.get(PROVIDER_PARAMETER))
    emit_callback_metric(reply.outcome)
    log = logger.info if reply.status < 400 else logger.warning
    log("callback answered", extra={"status": reply.status, "outcome": reply.outcome, "task_id": reply.task_id})
    return Response(status_code=reply.status, content_type="application/json", body=reply.body())


@entry_point
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _callbacks  # noqa: PLW0603 - built once per container, reused by warm invocations
    if _callbacks is None:
        _callbacks = build_callbacks(os.environ)
    return app.resolve(event, context)
