"""`make demo` as a user runs it: moto_server in its own process, the template deployed, a full run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from runway_archiver.local.demo import DEMO_TASKS, FAMILY_TASKS, LOG_FILE, RUNWAY_STACK_GATEWAY_TASKS
from runway_archiver.local.engines import REPO_ROOT


def test_the_demo_archives_every_task_and_announces_each_once() -> None:
    # When the demo runs from the command line, as `make demo` runs it
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-m", "runway_archiver.cli", "demo", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )

    # Then it succeeds and its report shows every outcome the emulator scripted
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout
    # (one report per stack: the CometAPI one and the one polling Runway's API)
    assert report.count("every task ended: True; exactly one event per task: True") == 2
    assert "demo-quick-cat     ARCHIVED" in report
    assert "demo-moderated     FAILED" in report
    assert "runway.task.failed" in report
    assert report.count("runway.task.archived  ") == 6 + len(FAMILY_TASKS) + len(RUNWAY_STACK_GATEWAY_TASKS)
    # one task of every other model family, archived by the same stack, each under its provider's folder
    for task_id, (_, options) in FAMILY_TASKS.items():
        family = options["family"]
        assert f"{task_id:<18} ARCHIVED  polls=3" in report
        assert f"provider {family}" in report
        assert f"runway/{family}/{task_id}/video.mp4" in report
        assert f"provider={family}  model={family}" in report
    # today's task envelope, and Runway's own API as the provider (two outputs: video and video_2)
    assert "demo-envelope-fox  ARCHIVED  polls=3  answered in task-envelope" in report
    assert "demo-runway-owl    ARCHIVED  polls=4  answered in runway-task" in report
    assert "runway/demo-runway-owl/video_2.mp4" in report
    assert "provider=runway" in report
    # the same Provider=runway stack archives a Kling task through the gateway, with the gateway's key
    assert "demo-kling-wren    ARCHIVED  polls=3" in report
    assert "runway/kling/demo-kling-wren/video.mp4" in report
    # the task that finished early was archived after the provider's callback, not by polling on
    assert "demo-callback-bird ARCHIVED  polls=2" in report
    assert "poster     absent" in report
    # the archive on its own: a manifest beside the files, and verify over every archived task
    assert "The manifest beside demo-quick-cat's files: s3://" in report
    assert '"event_type": "runway.task.archived"' in report
    assert re.search(r"verify: \d+ check\(s\), 0 missing or mismatched", report)
    assert "demo-quick-cat     manifest    OK" in report
    # The report alone: no JSON log line (they are in the file the demo names), no empty run line.
    lines = report.splitlines()
    assert not [line for line in lines if line.startswith('{"level":')]
    assert not [line for line in lines if re.fullmatch(r"run \d+ at \S+: ?", line)]
    assert any(json.loads(line).get("message") == "run finished" for line in LOG_FILE.read_text().splitlines())
    # It ends with `status` of the archive, and the last line says where to look next.
    assert "$ runway-archiver status --stack runway-archiver-local" in report
    assert "OK: nothing needs attention" in report
    assert str(LOG_FILE) in lines[-1]
    assert "`make local`" in lines[-1] and "runway-archiver" in lines[-1]
    assert "`.venv/bin/runway-archiver demo --browse`" in lines[-1]  # the command that opens the archive
    assert result.stderr == ""  # not even a library's goodbye line


def test_the_readme_says_how_many_tasks_the_demo_registers() -> None:
    numbers = {"four": 4, "five": 5, "six": 6, "seven": 7}
    readme = (REPO_ROOT / "README.md").read_text()
    [said] = re.findall(r"registers (\w+) tasks", readme)
    assert numbers[said] == len(DEMO_TASKS)


def test_demo_browse_keeps_the_demos_archive_up_as_a_page() -> None:
    # When the demo runs with --browse, as its last line says (no browser here: it prints the address)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "runway_archiver.cli", "demo", "--quiet", "--browse"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert demo.stdout is not None
        deadline = time.monotonic() + 300
        line = ""
        while time.monotonic() < deadline and not line.startswith("browsing stack"):
            line = demo.stdout.readline()
            assert line or demo.poll() is None, demo.stderr.read() if demo.stderr else ""
        # Then the page of the demo's first stack answers on loopback with its archived tasks
        assert line.startswith("browsing stack runway-archiver-local at http://127.0.0.1:"), line
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url is not None
        with urllib.request.urlopen(url.group(0), timeout=30) as answer:
            grid = answer.read().decode()
        for task_id in ("demo-quick-cat", "demo-slow-dog", "demo-envelope-fox"):
            assert f'data-task-id="{task_id}"' in grid
        with urllib.request.urlopen(url.group(0) + "?status=FAILED", timeout=30) as answer:
            assert 'data-task-id="demo-moderated"' in answer.read().decode()
        with urllib.request.urlopen(url.group(0) + "task/demo-quick-cat", timeout=30) as answer:
            task = answer.read().decode()
        assert "<video" in task and "X-Amz-Expires=3600" in task and "runway/demo-quick-cat/task.json" in task
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C, as the page says
        demo.wait(timeout=60)
    assert demo.returncode == 0
