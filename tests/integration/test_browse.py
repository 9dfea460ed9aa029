"""`runway-archiver browse` as a user sees it: the CLI serves the page (a subprocess) on the stack
deployed into the embedded AWS (DynamoDB Local and moto_server on loopback, so the presigned links
are addresses a browser can fetch), tasks archived by the CLI's own `run` from the feed emulator
(real WebM videos and PNG posters), and a real headless Chromium reading, filtering and playing it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from runway_archiver.browse.model import PAGE_SIZE
from runway_archiver.local.deploy import deploy
from runway_archiver.local.emulator import Fault, FeedEmulator
from runway_archiver.local.engines import REPO_ROOT, DynamoDBLocal, MotoServer, free_port, patched_environ
from tests.support.browser import CLIP, chromium, png
from tests.support.samples import API_KEY

pytestmark = pytest.mark.slow
STACK = "browse-under-test"
SCREENSHOT = REPO_ROOT / "docs" / "images" / "browse-grid.png"
HOSTILE_PROMPT = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">"\'&'
HOSTILE_ID = '"><script>window.__xss = 3</script>'  # written into the table by someone else, not `track`
POSTERS = {
    "river-at-dawn": ((14, 60, 110), (240, 170, 90), "a river at dawn, slow pan"),
    "meadow-wind": ((40, 110, 40), (200, 230, 120), "wind over a meadow"),
    "hostile-prompt": ((90, 20, 90), (240, 120, 160), HOSTILE_PROMPT),
    "city-night": ((10, 10, 40), (230, 200, 60), "a city at night, neon"),
}
LATEST = "lighthouse-storm"
NO_POSTER = "fog-no-poster"  # the provider gave a video only: its first frame stands in


@dataclass
class Page:
    moto: MotoServer
    url: str
    table: Any

    def get(self, path: str, host: str | None = None) -> tuple[int, str, dict[str, str]]:
        request = urllib.request.Request(self.url.rstrip("/") + path)
        if host:
            request.add_header("Host", host)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, answer.read().decode(), dict(answer.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), dict(error.headers)


def _cli(moto: MotoServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **moto.environment(), "RUNWAY_ARCHIVER_STACK": STACK}
    return subprocess.run(
        [sys.executable, "-m", "runway_archiver.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _real_media(feed: FeedEmulator, task_id: str, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> None:
    """The CDN serves a playable WebM and a real PNG poster for this task (once each, as archived)."""
    feed.fail_media(f"/media/{task_id}/video.mp4", Fault(body=CLIP.read_bytes(), content_type="video/webm"))
    feed.fail_media(f"/media/{task_id}/poster.png", Fault(body=png(320, 180, top, bottom), content_type="image/png"))


@pytest.fixture(scope="module")
def page(dynamodb_local: DynamoDBLocal | None) -> Iterator[Page]:
    with (
        MotoServer(dynamodb=dynamodb_local) as moto,
        FeedEmulator(api_key=API_KEY) as feed,
        patched_environ(moto.environment()),
    ):
        stack = deploy(boto3.session.Session(), stack_name=STACK, api_key=API_KEY, parameters=feed.stack_parameters())
        for task_id, (top, bottom, prompt) in POSTERS.items():
            feed.add_task(task_id, "3", prompt=prompt, last_frame=False)
            _real_media(feed, task_id, top, bottom)
        feed.add_task("moderated", "2")
        feed.add_task(NO_POSTER, "3", prompt="fog rolling in, video only", poster=False, last_frame=False)
        feed.fail_media(f"/media/{NO_POSTER}/video.mp4", Fault(body=CLIP.read_bytes(), content_type="video/webm"))
        feed.add_task(LATEST, "3", prompt="a lighthouse in a storm", last_frame=False)
        _real_media(feed, LATEST, (30, 40, 60), (160, 190, 210))

        for batch in ([*POSTERS, NO_POSTER, "moderated"], [LATEST]):  # two runs: the second's outcome is the newest
            tracked = _cli(moto, "track", *batch)
            assert tracked.returncode == 0, tracked.stderr
            ran = _cli(moto, "run", "--json")
            assert ran.returncode == 0, ran.stderr
            time.sleep(1.1)  # completed_at is to the second
        table = boto3.resource("dynamodb").Table(stack.table_name)
        now = datetime.now(UTC)
        table.put_item(
            Item={"task_id": HOSTILE_ID, "status": "FAILED", "completed_at": now.isoformat(), "error": HOSTILE_PROMPT}
        )
        # Expired tasks, enough for two pages, a third of them from another provider (model family).
        for n in range(PAGE_SIZE + 6):
            table.put_item(
                Item={
                    "task_id": f"old-{n:02d}",
                    "status": "EXPIRED",
                    "completed_at": (now - timedelta(days=40, minutes=n)).isoformat(timespec="seconds"),
                    "error": "expired",
                    **({"model_family": "kling"} if n % 3 == 0 else {}),
                }
            )

        port = free_port()
        env = {**os.environ, **moto.environment(), "RUNWAY_ARCHIVER_STACK": STACK}
        server = subprocess.Popen(
            [sys.executable, "-m", "runway_archiver.cli", "browse", "--no-open", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert server.stdout is not None
            first = server.stdout.readline()
            if f"http://127.0.0.1:{port}/" not in first:
                server.terminate()
                raise AssertionError(first + server.communicate(timeout=10)[1])
            yield Page(moto, f"http://127.0.0.1:{port}/", table)
        finally:
            server.terminate()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def _card_ids(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [card.get_attribute("data-task-id") for card in driver.find_elements(By.CSS_SELECTOR, "li.card")]


def test_the_grid_shows_the_archived_tasks_newest_first(page: Page, browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.url)
    ids = _card_ids(browser)
    assert ids[0] == LATEST  # archived by the later run
    assert sorted(ids) == sorted([*POSTERS, NO_POSTER, LATEST])
    text = browser.find_element("css selector", "main").text
    assert "runway" in text and "ARCHIVED" in text and "5.7 KiB" in text
    # every poster is a real image the browser drew, with its alt text
    images = browser.find_elements("css selector", "li.card img")
    assert len(images) == len(ids) - 1
    # (loading="lazy": a poster may arrive after the page's load event)
    drawn = "return [...document.querySelectorAll('li.card img')].map(i => i.complete && i.naturalWidth)"
    WebDriverWait(browser, 20).until(lambda d: all(d.execute_script(drawn)))
    assert browser.execute_script(drawn) == [320] * len(images)
    assert all(image.get_attribute("alt").startswith("Poster of task ") for image in images)
    first_frame = browser.find_element("css selector", f"li.card[data-task-id={NO_POSTER}] video")
    assert first_frame.get_attribute("aria-label") == f"First frame of task {NO_POSTER}"
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return arguments[0].readyState", first_frame) >= 2)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1100, 1180)  # the whole grid in one picture
    browser.save_screenshot(str(SCREENSHOT))
    browser.set_window_size(1280, 900)


def test_a_filter_narrows_the_grid(page: Page, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select, WebDriverWait

    browser.get(page.url)
    Select(browser.find_element("id", "status")).select_by_value("FAILED")
    browser.find_element("css selector", "form.filters button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: "status=FAILED" in d.current_url)
    assert sorted(_card_ids(browser)) == sorted(["moderated", HOSTILE_ID])
    # a date before every outcome: nothing ended by then
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    browser.get(f"{page.url}?status=ARCHIVED&until={yesterday}")
    assert _card_ids(browser) == []
    assert "No archived tasks matching the filters." in browser.find_element("id", "summary").text
    # the dates are inclusive: from today until today is every task archived today
    today = datetime.now(UTC).date().isoformat()
    browser.get(f"{page.url}?status=ARCHIVED&since={today}&until={today}")
    assert len(_card_ids(browser)) == len(POSTERS) + 2


def test_the_page_works_from_the_keyboard_and_at_a_phones_width(page: Page, browser: Any) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser.set_window_size(390, 844)
    try:
        browser.get(page.url)
        overflow = "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        assert browser.execute_script(overflow) <= 0  # nothing wider than the phone
        # every form control has a label
        unlabelled = browser.execute_script(
            "return [...document.querySelectorAll('input, select')].filter(e => !e.labels || !e.labels.length)"
            ".map(e => e.id)"
        )
        assert unlabelled == []
        body = browser.find_element("css selector", "body")
        for _ in range(40):  # Tab through the page to the newest task's link, then Enter
            body = browser.switch_to.active_element
            if body.get_attribute("href") and body.get_attribute("href").endswith(f"/task/{LATEST}"):
                break
            body.send_keys(Keys.TAB)
        else:
            raise AssertionError("the newest task's link cannot be reached with Tab")
        body.send_keys(Keys.ENTER)
        WebDriverWait(browser, 10).until(lambda d: d.current_url.endswith(f"/task/{LATEST}"))
        assert browser.execute_script(overflow) <= 0
    finally:
        browser.set_window_size(1280, 900)


def test_a_task_page_plays_its_video_and_shows_the_manifest_checksum(page: Page, browser: Any) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page.url)
    browser.find_element("link text", "river-at-dawn").click()
    video = browser.find_element("css selector", "video#video-0")
    source = video.get_attribute("src")
    assert source.startswith(page.moto.endpoint + "/")  # a presigned GET on the embedded S3
    assert "X-Amz-Expires=3600" in source and "X-Amz-Signature=" in source
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return arguments[0].readyState", video) >= 2)
    assert browser.execute_script("return arguments[0].error", video) is None
    item = page.table.get_item(Key={"task_id": "river-at-dawn"})["Item"]
    manifest = browser.find_element("css selector", "section[aria-labelledby=manifest]").text
    assert item["assets"]["video"]["sha256"] in manifest
    assert item["manifest"]["sha256"] in manifest
    assert item["assets"]["video"]["version_id"] in manifest
    assert '"video_url"' in manifest  # the provider's answer
    assert browser.find_element("id", "link-0").get_attribute("value") == source
    copy = browser.find_element("css selector", "button[data-copy=link-0]")
    assert copy.text == "Copy link"
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": page.url.rstrip("/"), "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    copy.click()
    WebDriverWait(browser, 10).until(lambda d: d.find_element("css selector", "[data-copied-for=link-0]").text)
    assert browser.find_element("css selector", "[data-copied-for=link-0]").text == "Link copied."
    copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[arguments.length - 1])")
    assert copied == source


def test_task_data_is_shown_as_text_never_run(page: Page, browser: Any) -> None:
    browser.get(page.url)
    assert HOSTILE_PROMPT in browser.find_element("css selector", "li.card[data-task-id=hostile-prompt]").text
    browser.get(f"{page.url}?status=FAILED")
    hostile = [
        c for c in browser.find_elements("css selector", "li.card") if c.get_attribute("data-task-id") == HOSTILE_ID
    ]
    assert len(hostile) == 1 and HOSTILE_ID in hostile[0].text
    hostile[0].find_element("css selector", "h2 a").click()
    assert browser.find_element("css selector", "h1 span").text == HOSTILE_ID
    browser.get(page.url + "task/hostile-prompt")
    assert HOSTILE_PROMPT in browser.find_element("css selector", "main").text
    assert browser.execute_script("return window.__xss") is None


def test_the_markup_escapes_every_value(page: Page) -> None:
    status, markup, headers = page.get("/?status=FAILED")
    assert status == 200
    assert "<script>window.__xss" not in markup
    assert "&lt;script&gt;window.__xss = 3&lt;/script&gt;" in markup
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    _, task, _ = page.get("/task/hostile-prompt")
    assert "<script>" not in task.replace('<script src="/static/browse.js" defer></script>', "")
    assert "&lt;img src=x onerror=&quot;window.__xss = 2&quot;&gt;" in task


def test_pages_follow_the_index_and_a_provider_filter_keeps_to_its_own(page: Page) -> None:
    seen: list[str] = []
    path = "/?status=EXPIRED"
    for _ in range(3):
        status, markup, _ = page.get(path)
        assert status == 200
        seen += [chunk.split('"', 1)[0] for chunk in markup.split('data-task-id="')[1:]]
        if 'rel="next"' not in markup:
            break
        path = markup.split('rel="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert seen == [f"old-{n:02d}" for n in range(PAGE_SIZE + 6)]  # newest first, each once, two pages
    _, kling, _ = page.get("/?status=EXPIRED&provider=kling")
    assert [c.split('"', 1)[0] for c in kling.split('data-task-id="')[1:]] == [
        f"old-{n:02d}" for n in range(0, PAGE_SIZE + 6, 3)
    ]


def test_the_page_refuses_other_hosts_and_damaged_links(page: Page) -> None:
    status, _, _ = page.get("/", host="evil.example:80")
    assert status == 421  # a DNS-rebinding page cannot read the archive through it
    status, markup, _ = page.get("/?status=ARCHIVED&after=bm90LWEta2V5")
    assert status == 400 and "start again from the first page" in markup
    status, _, _ = page.get("/task/no-such-task")
    assert status == 404


def test_the_screenshot_is_shown_in_the_operations_page() -> None:
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert "images/browse-grid.png" in operations
    assert Path(SCREENSHOT).is_file()


def test_browse_says_what_to_do_in_one_line(page: Page) -> None:
    done = _cli(page.moto, "browse", "--no-open", "--stack", "not-deployed")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "no stack not-deployed" in done.stderr
    taken = page.url.rstrip("/").rsplit(":", 1)[1]  # the page's own port
    done = _cli(page.moto, "browse", "--no-open", "--port", taken)
    assert done.returncode == 1
    assert (
        done.stderr
        == f"runway-archiver: cannot listen on 127.0.0.1:{taken} (Address already in use): pass another --port\n"
    )
