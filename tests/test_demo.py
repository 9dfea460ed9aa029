"""`make demo` as a user runs it: moto_server in its own process, the template deployed, a full run."""

from __future__ import annotations

import os
import re
import subprocess
import sys


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
    assert report.count("runway.task.archived  ") == 6  # the events' lines
    # today's task envelope, and Runway's own API as the provider (two outputs: video and video_2)
    assert "demo-envelope-fox  ARCHIVED  polls=3  answered in task-envelope" in report
    assert "demo-runway-owl    ARCHIVED  polls=4  answered in runway-task" in report
    assert "runway/demo-runway-owl/video_2.mp4" in report
    assert "provider=runway" in report
    # the task that finished early was archived after the provider's callback, not by polling on
    assert "demo-callback-bird ARCHIVED  polls=2" in report
    assert "poster     absent" in report
    # the archive on its own (issue 15): a manifest beside the files, and verify over every archived task
    assert "The manifest beside demo-quick-cat's files: s3://" in report
    assert '"event_type": "runway.task.archived"' in report
    assert re.search(r"verify: \d+ check\(s\), 0 missing or mismatched", report)
    assert "demo-quick-cat     manifest    OK" in report
