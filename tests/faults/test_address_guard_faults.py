"""Hostile media URLs: refused with a recorded error, and never fetched.

The stack allows 127.0.0.1/32 (where the emulated CDN lives); everything else private is refused.
Besides the guard, tests/conftest.py refuses any connection off loopback from this process, so a
guard that failed would fail these tests rather than send traffic anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from runway_archiver.local.emulator import Fault, FeedEmulator
from runway_archiver_lambda.address_guard import AddressGuard, AddressRefused, guarded_pool_manager
from tests.support.archive import Archive

Minutes = Callable[[int], str]
AREA = "Address guard"
REFUSED = "refused before any connection; FAILED with the reason; announced"


@pytest.fixture
def second_host() -> Iterator[FeedEmulator]:
    """Another server, on 127.0.0.2: loopback, but outside the allowed 127.0.0.1/32."""
    with FeedEmulator(host="127.0.0.2") as emulator:
        emulator.add_task("task", "3")
        yield emulator


def _answer_with_video(archive: Archive, feed: FeedEmulator, video_url: str) -> None:
    feed.add_task("task", "3")
    data = feed.task_data(feed.tasks["task"], "3")
    feed.fail_feed("task", Fault.answer({**data, "video_url": video_url, "poster": None, "last_frame": None}))
    archive.register("task")


def _assert_refused(archive: Archive, reason_part: str) -> None:
    item = archive.item("task")
    assert item["status"] == "FAILED"
    assert "refused" in item["error"]
    assert reason_part in item["error"]
    [event] = archive.events()
    assert event["type"] == "runway.task.failed"


@pytest.mark.parametrize(
    ("url", "reason_part"),
    [
        pytest.param("http://10.1.2.3/v.mp4", "not a public address", id="10/8"),
        pytest.param("http://172.16.0.1/v.mp4", "not a public address", id="172.16/12"),
        pytest.param("http://192.168.1.1/v.mp4", "not a public address", id="192.168/16"),
        pytest.param("http://169.254.169.254/latest/meta-data/iam/", "instance metadata", id="169.254.169.254"),
        pytest.param("http://[fd00:ec2::254]/latest/", "instance metadata", id="fd00:ec2::254"),
        pytest.param("http://[::ffff:169.254.169.254]/", "instance metadata", id="v4-mapped-metadata"),
        pytest.param("http://[::1]:9/v.mp4", "not a public address", id="[::1]"),
        pytest.param("http://0.0.0.0:9/v.mp4", "not a public address", id="0.0.0.0"),
        pytest.param("file:///etc/passwd", "scheme 'file'", id="file"),
        pytest.param("ftp://127.0.0.1/v.mp4", "scheme 'ftp'", id="ftp"),
    ],
)
@pytest.mark.fault(AREA, "a media URL on a private, metadata or non-http address", REFUSED)
def test_a_media_url_off_limits_is_refused(
    archive: Archive, feed: FeedEmulator, minutes: Minutes, url: str, reason_part: str
) -> None:
    _answer_with_video(archive, feed, url)

    summary = archive.run(minutes(0))

    assert summary["failed"] == 1
    _assert_refused(archive, reason_part)


@pytest.mark.fault(AREA, "loopback outside the allowed network (127.0.0.2)", REFUSED + "; the host saw no request")
def test_loopback_outside_the_allowed_network_is_refused(
    archive: Archive, feed: FeedEmulator, second_host: FeedEmulator, minutes: Minutes
) -> None:
    _answer_with_video(archive, feed, second_host.media_url("task", "video.mp4"))

    archive.run(minutes(0))

    _assert_refused(archive, "127.0.0.2")
    assert second_host.requests == []


@pytest.mark.fault(AREA, "an allowed host that redirects to a private one", REFUSED + "; the private host saw nothing")
def test_a_redirect_to_a_private_host_is_refused(
    archive: Archive, feed: FeedEmulator, second_host: FeedEmulator, minutes: Minutes
) -> None:
    _answer_with_video(archive, feed, feed.media_url("task", "bounce.mp4"))
    feed.fail_media(
        "/media/task/bounce.mp4", Fault(status=302, headers={"Location": second_host.media_url("task", "video.mp4")})
    )

    archive.run(minutes(0))

    _assert_refused(archive, "127.0.0.2")
    assert ("GET", "/media/task/bounce.mp4") in feed.requests
    assert second_host.requests == []


@pytest.mark.fault(AREA, "an allowed host that redirects to the metadata service", REFUSED)
def test_a_redirect_to_the_metadata_service_is_refused(archive: Archive, feed: FeedEmulator, minutes: Minutes) -> None:
    _answer_with_video(archive, feed, feed.media_url("task", "bounce.mp4"))
    feed.fail_media("/media/task/bounce.mp4", Fault(status=301, headers={"Location": "http://169.254.169.254/latest/"}))

    archive.run(minutes(0))

    _assert_refused(archive, "instance metadata")


class TestWithNoPrivateNetworkAllowed:
    @pytest.fixture
    def allowed_networks(self) -> str:
        return ""

    @pytest.mark.fault(
        AREA, "a host name that resolves to a private address (localhost)", REFUSED + "; nothing fetched"
    )
    def test_a_name_resolving_to_loopback_is_refused(
        self, archive: Archive, feed: FeedEmulator, minutes: Minutes
    ) -> None:
        port = feed.base_url.rsplit(":", 1)[1]
        _answer_with_video(archive, feed, f"http://localhost:{port}/media/task/video.mp4")

        archive.run(minutes(0))

        _assert_refused(archive, "localhost -> 127.0.0.1")
        assert [r for r in feed.requests if r[0] == "GET"] == []


def _getaddrinfo_for(address: str, port: int) -> list[tuple[Any, Any, Any, Any, Any]]:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, 6, "", (address, port))]


@pytest.mark.fault(
    AREA,
    "DNS rebinding (a name answering differently on a second lookup)",
    "one lookup only; the socket connects to the very address that was checked",
)
def test_the_guard_connects_to_the_address_it_checked(feed: FeedEmulator) -> None:
    # A resolver that answers with an allowed address first and a private one afterwards.
    feed.add_task("task", "3")
    port = int(feed.base_url.rsplit(":", 1)[1])
    answers = iter(["127.0.0.1", "10.0.0.1", "10.0.0.1"])
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[tuple[Any, Any, Any, Any, Any]]:
        address = next(answers)
        lookups.append(address)
        return _getaddrinfo_for(address, port)

    guard = AddressGuard([ipaddress.ip_network("127.0.0.1/32")], resolve=rebinding)
    response = guarded_pool_manager(guard).request("GET", f"http://cdn.example:{port}/media/task/poster.png")

    assert response.status == 200
    assert lookups == ["127.0.0.1"]


@pytest.mark.fault(AREA, "DNS answering a private address among public ones", "refused: every address must pass")
def test_a_name_with_any_private_address_is_refused() -> None:
    def mixed(host: str, port: int) -> list[tuple[Any, Any, Any, Any, Any]]:
        return _getaddrinfo_for("93.184.216.34", port) + _getaddrinfo_for("10.0.0.1", port)

    guard = AddressGuard(resolve=mixed)
    with pytest.raises(AddressRefused, match=r"10\.0\.0\.1"):
        guard.connect("cdn.example", 80, 1.0, None, None)
