"""The address guard: which URLs and addresses a media copy may download from.

The URLs come from a third party's answer, so they are hostile until proven otherwise: only
http(s), and never a connection to a loopback, private, link-local or reserved address (unless
the operator allowed that network), nor to the instance-metadata service. The check is made on
the address the socket actually connects to, after our own DNS lookup, so a host name that
resolves differently a second time (DNS rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from .errors import MediaError, Persistence

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from .config import IPNetwork

# Refused whatever the operator allows: the EC2 and ECS credential endpoints.
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(MediaError):
    """The URL points somewhere the function must never read from: the copy fails for good."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, Persistence.PERMANENT)


class AddressGuard:
    """Decides which URLs and addresses the function may download from."""

    def __init__(self, allowed_private_networks: Iterable[IPNetwork] = (), *, resolve: Resolver | None = None) -> None:
        self._allowed = tuple(allowed_private_networks)
        self._resolve = resolve or _resolve

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise AddressRefused(f"refused URL scheme {parts.scheme or '(none)'!r}: only http and https")
        if not parts.hostname:
            raise AddressRefused("refused URL without a host")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            return  # a name: checked when it is resolved and connected to
        self.check_address(literal, parts.hostname)

    def check_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> None:
        reason = self._refusal(address)
        if reason:
            raise AddressRefused(f"refused {host} -> {address}: {reason}")

    def _refusal(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        for candidate in _embedded_addresses(address):
            if candidate in METADATA_ADDRESSES:
                return "instance metadata address"
        if any(address in network for network in self._allowed):
            return None
        for candidate in _embedded_addresses(address):
            if not candidate.is_global or candidate.is_multicast:
                return "not a public address (loopback, private, link-local or reserved)"
        return None

    def connect(
        self, host: str, port: int, timeout: float | None, source_address: tuple[str, int] | None, socket_options: Any
    ) -> socket.socket:
        """Resolve `host`, refuse if any address is off limits, connect to a checked address."""
        # One lookup; the socket connects to exactly the addresses checked here (no second lookup
        # that a rebinding DNS server could answer differently).
        infos = self._resolve(host, port)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        for address in addresses:
            self.check_address(address, host)
        last_error: OSError | None = None
        for family, socktype, proto, _, sockaddr in infos:
            sock = socket.socket(family, socktype, proto)
            try:
                for option in socket_options or ():
                    sock.setsockopt(*option)
                if timeout is not None:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                peer = ipaddress.ip_address(str(sock.getpeername()[0]).split("%")[0])
                self.check_address(peer, host)
            except OSError as exc:
                last_error = exc
                sock.close()
                continue
            except AddressRefused:
                sock.close()
                raise
            return sock
        raise last_error or OSError(f"no address to connect to for {host}")


Resolver: TypeAlias = "Callable[[str, int], list[tuple[Any, Any, Any, Any, Any]]]"


def _resolve(host: str, port: int) -> list[tuple[Any, Any, Any, Any, Any]]:
    return list(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


def _embedded_addresses(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The address itself and any IPv4 address it carries (mapped, 6to4, NAT64)."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            found.append(address.ipv4_mapped)
        if address.sixtofour:
            found.append(address.sixtofour)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def guarded_pool_manager(guard: AddressGuard, **pool_kwargs: Any) -> urllib3.PoolManager:
    """A PoolManager whose every connection goes through `guard.connect`."""

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _guarded_new_conn(self, guard)

        def request(self, *args: Any, **kwargs: Any) -> None:
            _report_socket(self.sock)  # a connection from the pool: its socket is already there
            super().request(*args, **kwargs)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _guarded_new_conn(self, guard)

        def request(self, *args: Any, **kwargs: Any) -> None:
            _report_socket(self.sock)
            super().request(*args, **kwargs)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    manager = urllib3.PoolManager(**pool_kwargs)
    manager.pool_classes_by_scheme = {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
    return manager


_watchers = threading.local()


@contextmanager
def sockets_reported_to(watch: Callable[[socket.socket], None]) -> Iterator[None]:
    """Inside, every socket a guarded connection of this thread sends a request on goes to `watch`
    first (a new one as soon as it is connected), so a watchdog can shut it down mid-answer."""
    previous = getattr(_watchers, "watch", None)
    _watchers.watch = watch
    try:
        yield
    finally:
        _watchers.watch = previous


def _report_socket(sock: socket.socket | None) -> None:
    watch = getattr(_watchers, "watch", None)
    if watch is not None and sock is not None:
        watch(sock)


def _guarded_new_conn(conn: HTTPConnection, guard: AddressGuard) -> socket.socket:
    try:
        sock = guard.connect(conn.host, conn.port, conn.timeout, conn.source_address, conn.socket_options)
        _report_socket(sock)
        return sock
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(conn, f"connection to {conn.host} timed out") from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"failed to connect: {exc}") from exc
