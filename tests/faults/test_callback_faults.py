"""The callback token rotated under warm containers, observed through the callback function's handler."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import pytest

from tests.support.archive import Archive

AREA = "Callbacks"


class _Clock:
    """The container's monotonic clock, moved by the test instead of waited for."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _warm_container(archive: Archive, monkeypatch: pytest.MonkeyPatch, clock: _Clock) -> Any:
    """The callback function's container as a warm one keeps it between invocations, on `clock`."""
    for name, value in archive.stack.environments["IntakeFunction"].items():
        monkeypatch.setenv(name, value)
    from runway_archiver_lambda.handlers import callback as callback_entry
    from runway_archiver_lambda.wiring import build_callbacks

    callbacks = build_callbacks(os.environ, clock=clock)
    monkeypatch.setattr(callback_entry, "_callbacks", callbacks)
    return callbacks


@pytest.mark.fault(
    AREA,
    "the callback token rotated (revoked) while containers are warm",
    "the old token accepted at most CALLBACK_TOKEN_TTL_SECONDS (300 s) longer, then refused; the new one accepted; "
    "the secret re-read once per TTL, not on every mismatch",
)
def test_a_rotated_callback_token_is_refused_once_the_cached_copy_is_too_old(
    archive: Archive, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runway_archiver_lambda.config import CALLBACK_TOKEN_TTL_SECONDS

    clock = _Clock()
    callbacks = _warm_container(archive, monkeypatch, clock)
    archive.register("task")
    body = json.dumps({"task_id": "task", "status": "3"})
    old = archive.callback_token

    assert archive.callback(body, token=old, warm=True)["statusCode"] == 202
    new = "rotated-callback-token-0123456789abcdef"
    boto3.client("secretsmanager").put_secret_value(
        SecretId=archive.stack.outputs["CallbackTokenSecretArn"], SecretString=new
    )

    clock.now += CALLBACK_TOKEN_TTL_SECONDS - 1
    # Within the TTL the cached token still rules, and a wrong one does not make the container read again.
    assert archive.callback(body, token=old, warm=True)["statusCode"] == 202
    assert [archive.callback(body, token=new, warm=True)["statusCode"] for _ in range(3)] == [401] * 3
    assert callbacks.token.reads == 1

    clock.now += 1
    assert archive.callback(body, token=old, warm=True)["statusCode"] == 401
    assert archive.callback(body, token=new, warm=True)["statusCode"] == 202
    assert callbacks.token.reads == 2
