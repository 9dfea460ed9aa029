"""A real browser for the tests: Debian's chromium driven through its own chromedriver (Selenium),
never a driver or browser downloaded from elsewhere; and the real media a browser can show."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# A 2-second VP8 WebM (160x90, 5.9 KB) that Chromium recorded from a canvas once (MediaRecorder).
CLIP = Path(__file__).with_name("clip.webm")
FLAGS = (
    "--headless",
    "--no-sandbox",  # the tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--autoplay-policy=no-user-gesture-required",
)


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium with a fresh profile; the test FAILS, in one line, when there is none."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"no {' or '.join(missing)}: the browser test needs Debian's chromium and chromium-driver "
            "(`make browser` installs them with apt-get)",
            pytrace=False,
        )
    # Selenium Manager must never fetch a driver or a browser: both are named, and it is told so.
    os.environ.setdefault("SE_OFFLINE", "true")
    os.environ.setdefault("SE_AVOID_BROWSER_DOWNLOAD", "true")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="browse-test-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        reason = (exc.msg or str(exc)).strip().splitlines()[0]
        pytest.fail(f"Chromium did not start for the browser test: {reason}", pytrace=False)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def png(width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> bytes:
    """A real PNG (a vertical gradient), for posters a browser draws."""
    rows = []
    for y in range(height):
        mix = y / max(1, height - 1)
        pixel = bytes(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True))
        rows.append(b"\x00" + pixel * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )
