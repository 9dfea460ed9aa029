"""Settings of the three functions, read once from the environment the template sets.

`Settings` is the poller's and the worker's, `CallbackSettings` the callback function's; both parse
with the helpers at the bottom, so a missing or malformed variable is named the same way.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from .feed import Provider

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_N = TypeVar("_N", int, float)

# How long a warm callback container trusts the token it read: a rotated (revoked) token is refused
# at most this long after the rotation. One Secrets Manager read per container per period; a wrong
# token never causes a read (a flood of bad callbacks cannot drive the secret's calls).
CALLBACK_TOKEN_TTL_SECONDS: Final = 300.0


class ConfigError(ValueError):
    """The environment does not describe a usable configuration."""


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know that is not in the event.

    Only `TABLE_NAME`, `BUCKET_NAME`, `TOPIC_ARN` and `API_KEY_SECRET_ARN` are required;
    the rest have the defaults the template also uses.
    """

    table_name: str
    bucket_name: str
    topic_arn: str
    api_key_secret_id: str
    provider: Provider = Provider.COMETAPI
    # With Provider=runway, the gateway's key for every other family (None: those families are not served).
    gateway_key_secret_id: str | None = None
    api_base_url: str = "https://api.cometapi.com"
    runway_base_url: str = "https://api.dev.runwayml.com"
    api_version: str = "2024-11-06"
    allowed_private_networks: tuple[IPNetwork, ...] = ()
    key_prefix: str = "runway"
    event_source: str = "runway-archiver"
    expire_after_seconds: int = 24 * 3600
    lease_seconds: int = 300
    poll_concurrency: int = 16
    archive_concurrency: int = 4
    min_poll_interval_seconds: int = 30
    max_poll_interval_seconds: int = 600
    fast_polls: int = 10
    claim_cutoff_seconds: float = 90.0
    max_media_bytes: int = 5 * 1024**3
    media_copy_timeout_seconds: float = 150.0
    persistent_error_grace_seconds: int = 3600
    # A task id created moments ago may answer `task_not_exist` for a short while (FEED_API.md).
    new_task_grace_seconds: int = 600
    connect_timeout_seconds: float = 3.05
    read_timeout_seconds: float = 20.0
    # Scale-out: with a work queue, due tasks beyond what one run keeps go to the workers.
    work_queue_url: str | None = None
    fanout_threshold: int = 400
    dispatch_lease_seconds: int = 900

    def __post_init__(self) -> None:
        if not self.api_base_url.startswith(("https://", "http://")):
            raise ConfigError(f"COMETAPI_BASE_URL must be an http(s) URL, got {self.api_base_url!r}")
        if not self.runway_base_url.startswith(("https://", "http://")):
            raise ConfigError(f"RUNWAY_API_BASE_URL must be an http(s) URL, got {self.runway_base_url!r}")
        if self.poll_concurrency < 1 or self.archive_concurrency < 1:
            raise ConfigError("POLL_CONCURRENCY and ARCHIVE_CONCURRENCY must be at least 1")
        if not 0 < self.min_poll_interval_seconds <= self.max_poll_interval_seconds:
            raise ConfigError("need 0 < MIN_POLL_INTERVAL_SECONDS <= MAX_POLL_INTERVAL_SECONDS")
        if self.lease_seconds < 60:
            raise ConfigError("LEASE_SECONDS must be at least 60")
        if self.fanout_threshold < 0 or self.dispatch_lease_seconds < 60:
            raise ConfigError("FANOUT_THRESHOLD must be at least 0 and DISPATCH_LEASE_SECONDS at least 60")
        if "/" in self.key_prefix.strip("/") or not self.key_prefix.strip("/"):
            raise ConfigError("KEY_PREFIX must be one non-empty path segment")

    @property
    def feed_base_url(self) -> str:
        """The base URL of the chosen provider's API."""
        return self.runway_base_url if self.provider is Provider.RUNWAY else self.api_base_url

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables; errors name the offending variable."""
        given = _require(environ, ("TABLE_NAME", "BUCKET_NAME", "TOPIC_ARN", "API_KEY_SECRET_ARN"))

        def number(name: str, parse: Callable[[str], _N], default: _N) -> _N:
            return _number(environ, name, parse, default)

        raw_provider = environ.get("PROVIDER", "").strip().lower() or cls.provider.value
        try:
            provider = Provider(raw_provider)
        except ValueError as exc:
            choices = ", ".join(p.value for p in Provider)
            raise ConfigError(f"environment variable PROVIDER={raw_provider!r} is not one of {choices}") from exc
        return cls(
            table_name=given["TABLE_NAME"],
            bucket_name=given["BUCKET_NAME"],
            topic_arn=given["TOPIC_ARN"],
            api_key_secret_id=given["API_KEY_SECRET_ARN"],
            provider=provider,
            gateway_key_secret_id=environ.get("GATEWAY_API_KEY_SECRET_ARN", "").strip() or None,
            api_base_url=environ.get("COMETAPI_BASE_URL", "").strip().rstrip("/") or cls.api_base_url,
            runway_base_url=environ.get("RUNWAY_API_BASE_URL", "").strip().rstrip("/") or cls.runway_base_url,
            api_version=environ.get("RUNWAY_API_VERSION", "").strip() or cls.api_version,
            allowed_private_networks=_parse_networks(environ.get("ALLOWED_PRIVATE_NETWORKS", "")),
            key_prefix=environ.get("KEY_PREFIX", "").strip().strip("/") or cls.key_prefix,
            event_source=environ.get("EVENT_SOURCE", "").strip() or cls.event_source,
            expire_after_seconds=int(3600 * number("EXPIRE_AFTER_HOURS", float, cls.expire_after_seconds / 3600)),
            lease_seconds=number("LEASE_SECONDS", int, cls.lease_seconds),
            poll_concurrency=number("POLL_CONCURRENCY", int, cls.poll_concurrency),
            min_poll_interval_seconds=number("MIN_POLL_INTERVAL_SECONDS", int, cls.min_poll_interval_seconds),
            max_poll_interval_seconds=number("MAX_POLL_INTERVAL_SECONDS", int, cls.max_poll_interval_seconds),
            archive_concurrency=number("ARCHIVE_CONCURRENCY", int, cls.archive_concurrency),
            fast_polls=number("FAST_POLLS", int, cls.fast_polls),
            claim_cutoff_seconds=number("CLAIM_CUTOFF_SECONDS", float, cls.claim_cutoff_seconds),
            max_media_bytes=number("MAX_MEDIA_BYTES", int, cls.max_media_bytes),
            media_copy_timeout_seconds=number("MEDIA_COPY_TIMEOUT_SECONDS", float, cls.media_copy_timeout_seconds),
            persistent_error_grace_seconds=number(
                "PERSISTENT_ERROR_GRACE_SECONDS", int, cls.persistent_error_grace_seconds
            ),
            new_task_grace_seconds=number("NEW_TASK_GRACE_SECONDS", int, cls.new_task_grace_seconds),
            connect_timeout_seconds=number("CONNECT_TIMEOUT_SECONDS", float, cls.connect_timeout_seconds),
            read_timeout_seconds=number("READ_TIMEOUT_SECONDS", float, cls.read_timeout_seconds),
            work_queue_url=environ.get("WORK_QUEUE_URL", "").strip() or None,
            fanout_threshold=number("FANOUT_THRESHOLD", int, cls.fanout_threshold),
            dispatch_lease_seconds=number("DISPATCH_LEASE_SECONDS", int, cls.dispatch_lease_seconds),
        )


@dataclass(frozen=True)
class CallbackSettings:
    """What the callback function needs: where tasks and work requests go, the token, two limits."""

    table_name: str
    work_queue_url: str
    token_secret_id: str
    max_body_bytes: int = 64 * 1024
    allow_registration: bool = False
    token_ttl_seconds: float = CALLBACK_TOKEN_TTL_SECONDS

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CallbackSettings:
        given = _require(environ, ("TABLE_NAME", "WORK_QUEUE_URL", "CALLBACK_TOKEN_SECRET_ARN"))
        return cls(
            table_name=given["TABLE_NAME"],
            work_queue_url=given["WORK_QUEUE_URL"],
            token_secret_id=given["CALLBACK_TOKEN_SECRET_ARN"],
            max_body_bytes=_number(environ, "CALLBACK_MAX_BYTES", _whole_number, cls.max_body_bytes, "a whole number"),
            allow_registration=environ.get("ALLOW_CALLBACK_REGISTRATION", "").strip().lower() == "true",
            token_ttl_seconds=_number(
                environ, "CALLBACK_TOKEN_TTL_SECONDS", _positive, cls.token_ttl_seconds, "a positive number"
            ),
        )


# -- parsing, shared by both ----------------------------------------------------------------------
def _require(environ: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The values of variables that must be set; the error names every one that is not."""
    values = {name: environ.get(name, "").strip() for name in names}
    missing = [name for name, value in values.items() if not value]
    if len(missing) == 1:
        raise ConfigError(f"environment variable {missing[0]} is required and is not set")
    if missing:
        raise ConfigError(f"environment variables required and not set: {', '.join(missing)}")
    return values


def _number(
    environ: Mapping[str, str], name: str, parse: Callable[[str], _N], default: _N, what: str = "a number"
) -> _N:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={raw!r} is not {what}") from exc


def _whole_number(raw: str) -> int:
    if not raw.isdigit():
        raise ValueError(raw)
    return int(raw)


def _positive(raw: str) -> float:
    value = float(raw)
    if not 0 < value < float("inf"):
        raise ValueError(raw)
    return value


def _parse_networks(raw: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in raw.split(","):
        cidr = part.strip()
        if not cidr:
            continue
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as exc:
            raise ConfigError(f"ALLOWED_PRIVATE_NETWORKS has an invalid CIDR {cidr!r}: {exc}") from exc
    return tuple(networks)
