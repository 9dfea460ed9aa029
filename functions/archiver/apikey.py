"""The CometAPI key, read from Secrets Manager once per cold start and again only after a 401."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from .feed import FeedError, FeedErrorKind

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretApiKey:
    """The bare key stored as the secret's `SecretString`, cached for the life of the container.

    A rotated key shows up as a 401 from the feed; the client then asks for `refreshed()`,
    which reads the secret again (once, however many threads saw the 401 with the stale key).
    """

    def __init__(self, client: SecretsManagerClient, secret_id: str) -> None:
        self._client = client
        self._secret_id = secret_id
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
            raise FeedError(
                FeedErrorKind.UNAUTHORIZED, f"the API key secret could not be read ({code or type(exc).__name__})"
            ) from exc
        key = value.strip()
        if not key:
            raise FeedError(
                FeedErrorKind.UNAUTHORIZED, "the API key secret is empty: put the CometAPI key in it (see README)"
            )
        return key
