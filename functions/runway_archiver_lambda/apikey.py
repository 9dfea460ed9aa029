"""Secrets (the CometAPI key, the callback token), read once per cold start and again only after a refusal."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .feed import FeedError, FeedErrorKind

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretUnavailable(Exception):
    """The secret could not be read, or holds nothing."""


class CachedSecret:
    """A secret's bare `SecretString`, read once and kept for the life of the container.

    A rotated value shows up as a refusal; the caller then asks for `refreshed()`, which reads the
    secret again (once, however many threads saw the refusal with the stale value).
    """

    def __init__(self, client: SecretsManagerClient, secret_id: str, *, what: str = "the secret") -> None:
        self._client = client
        self._secret_id = secret_id
        self._what = what
        self._value: str | None = None
        self._lock = threading.Lock()
        self.reads = 0  # Secrets Manager calls made: one per cold start in normal operation

    def current(self) -> str:
        with self._lock:
            if self._value is None:
                self._value = self._read()
            return self._value

    def refreshed(self, stale: str) -> str:
        with self._lock:
            if self._value is None or self._value == stale:
                self._value = self._read()
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
