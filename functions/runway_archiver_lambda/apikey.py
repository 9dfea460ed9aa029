"""Secrets (the API keys, the callback token): read once per cold start, then again after a
refusal (the key) or once the copy is older than its time to live (the callback token)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from .feed import FeedError, FeedErrorKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretUnavailable(Exception):
    """The secret could not be read, or holds nothing."""


class SecretEmpty(SecretUnavailable):
    """The secret holds no value: none was ever put (AWS: ResourceNotFoundException), or a blank one."""


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
            if code == "ResourceNotFoundException":
                raise SecretEmpty(
                    f"{self._what} holds no value: put its value in the secret (docs/configuration-and-deployment.md)"
                ) from exc
            raise SecretUnavailable(f"{self._what} could not be read ({code or type(exc).__name__})") from exc
        if not value.strip():
            raise SecretEmpty(
                f"{self._what} is empty: put its value in the secret (docs/configuration-and-deployment.md)"
            )
        return value.strip()


class SecretApiKey(CachedSecret):
    """An API key (the Provider's, or the gateway's); a secret that cannot be read is a feed error the
    run stops on. `present()` tells a secret that holds no key yet (the gateway's, not put) from one
    that cannot be read: its answer "no key" is kept `ABSENT_RECHECK_SECONDS`, so a backlog of tasks
    needing it costs one Secrets Manager read, and a key put since is seen within that time."""

    ABSENT_RECHECK_SECONDS: Final = 60.0

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        *,
        what: str = "the API key secret",
        key_name: str = "the CometAPI key",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client, secret_id, what=what, clock=clock)
        self._key_name = key_name
        self._absent_until: float | None = None

    def present(self) -> bool:
        """Whether the secret holds a key (raises `FeedError` when it cannot be read at all)."""
        if self._absent_until is not None and self._clock() < self._absent_until:
            return False
        try:
            self.current()
        except FeedError as exc:
            if not isinstance(exc.__cause__, SecretEmpty):
                raise
            self._absent_until = self._clock() + self.ABSENT_RECHECK_SECONDS
            return False
        self._absent_until = None
        return True

    def _read(self) -> str:
        try:
            return super()._read()
        except SecretUnavailable as exc:
            raise FeedError(FeedErrorKind.UNAUTHORIZED, str(exc).replace("its value", self._key_name)) from exc
