"""Secrets (the CometAPI key, the callback token): read once per cold start, then again after a
refusal (the key) or once the copy is older than its time to live (the callback token)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .feed import FeedError, FeedErrorKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretUnavailable(Exception):
    """The secret could not be read, or holds nothing."""


class CachedSecret:
    """A secret's bare `SecretString`, read once and kept for the life of the container, or with
    `max_age_seconds` read again once the kept copy is that old (on `clock`, monotonic seconds).

    A secret we present (the API key) shows a rotation as a refusal: the caller then asks for
    `refreshed()`, which reads the secret again (once, however many threads saw the refusal with the
    stale value). A secret we check others against (the callback token) has no such signal, a
    mismatch being what any wrong caller sends: it is re-read on its age alone, so a rotation
    revokes the old value within `max_age_seconds`. A failed re-read raises (no stale value is kept
    past its age).
    """

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        *,
        what: str = "the secret",
        max_age_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._secret_id = secret_id
        self._what = what
        self._max_age = max_age_seconds
        self._clock = clock
        self._value: str | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()
        self.reads = 0  # Secrets Manager calls made: one per cold start (and per max age) in normal operation

    def current(self) -> str:
        with self._lock:
            if self._value is None or (self._max_age is not None and self._clock() - self._read_at >= self._max_age):
                self._value = None  # a failed re-read leaves nothing to trust
                self._value = self._read()
                self._read_at = self._clock()
            return self._value

    def refreshed(self, stale: str) -> str:
        with self._lock:
            if self._value is None or self._value == stale:
                self._value = self._read()
                self._read_at = self._clock()
            return self._value

    def _read(self) -> str:
        self.reads += 1
        try:
            value = self._client.get_secret_value(SecretId=self._secret_id).get("SecretString", "")
        except (ClientError, BotoCoreError) as exc:
            code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
            raise SecretUnavailable(f"{self._what} could not be read ({code or type(exc).__name__})") from exc
        if not value.strip():
            raise SecretUnavailable(
                f"{self._what} is empty: put its value in the secret (docs/configuration-and-deployment.md)"
            )
        return value.strip()


class SecretApiKey(CachedSecret):
    """The CometAPI key; a secret that cannot be read is a feed error the run stops on."""

    def __init__(self, client: SecretsManagerClient, secret_id: str) -> None:
        super().__init__(client, secret_id, what="the API key secret")

    def _read(self) -> str:
        try:
            return super()._read()
        except SecretUnavailable as exc:
            raise FeedError(FeedErrorKind.UNAUTHORIZED, str(exc).replace("its value", "the CometAPI key")) from exc
