"""The fault-injection suite's report: `pytest tests/faults --reliability-report docs/reliability.md`.

Each case carries `@pytest.mark.fault(area, fault, expected)`; the report groups the cases by
area and fault and says what was observed in this very run (passed, or how it failed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from runway_archiver.local.deploy import deploy
from runway_archiver.local.emulator import FeedEmulator
from runway_archiver.local.engines import DynamoDBLocal, MotoServer
from tests.support.archive import Archive, subscribed_archive
from tests.support.samples import API_KEY

_results: dict[tuple[str, str, str], list[tuple[str, str]]] = defaultdict(list)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-report", metavar="PATH", help="write the fault table (Markdown) here")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(area, fault, expected): a case of the fault-injection suite")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    marker = item.get_closest_marker("fault")
    if marker is not None:  # carried with the report: under pytest-xdist, to the process that writes the table
        report.user_properties.append(("fault", [*marker.args, item.name]))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each case's outcome, in the process that writes the table (the controller under pytest-xdist)."""
    fault = next((value for key, value in report.user_properties if key == "fault"), None)
    if isinstance(fault, list) and (report.when == "call" or report.outcome != "passed"):
        area, kind, expected, name = fault
        observed = "as expected" if report.outcome == "passed" else _first_line(report.longreprtext)
        _results[(area, kind, expected)].append((name, observed))


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--reliability-report")
    if not path or not _results or hasattr(session.config, "workerinput"):  # a pytest-xdist worker: not its job
        return
    lines = [
        "| area | fault | cases | expected outcome | observed outcome |",
        "|---|---|---|---|---|",
    ]
    for (area, fault, expected), cases in sorted(_results.items()):
        failed = [observed for _, observed in cases if observed != "as expected"]
        observed = (
            f"as expected in {len(cases)} of {len(cases)}"
            if not failed
            else f"**{len(failed)} of {len(cases)} not as expected**: {failed[0]}"
        )
        lines.append(f"| {area} | {fault} | {len(cases)} | {expected} | {observed} |")
    total = sum(len(cases) for cases in _results.values())
    passed = sum(1 for cases in _results.values() for _, o in cases if o == "as expected")
    text = Path(path).read_text() if Path(path).exists() else ""
    table = "\n".join(lines) + f"\n\nCases: {total}; as expected: {passed}.\n"
    begin, end = "<!-- fault-table:begin -->", "<!-- fault-table:end -->"
    if begin in text and end in text:
        text = text[: text.index(begin) + len(begin)] + "\n" + table + text[text.index(end) :]
    else:
        text += f"\n{begin}\n{table}{end}\n"
    Path(path).write_text(text)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("E "):
            return line[2:].strip().replace("|", "/")[:160]
    return "failed"


@pytest.fixture(scope="session")
def moto_server(dynamodb_local: DynamoDBLocal | None) -> Iterator[MotoServer]:
    """The embedded AWS over HTTP: moto in its own process (requests serialised) and the session's
    DynamoDB Local, shared by the suite and reset per test."""
    with MotoServer(dynamodb=dynamodb_local) as server:
        yield server


@pytest.fixture
def server_archive(
    moto_server: MotoServer, feed: FeedEmulator, allowed_networks: str, monkeypatch: pytest.MonkeyPatch
) -> Archive:
    """Like `archive`, but AWS is moto_server over HTTP: shared with other processes, like real AWS."""
    moto_server.reset()
    for name, value in moto_server.environment().items():
        monkeypatch.setenv(name, value)
    stack = deploy(
        boto3.session.Session(),
        api_key=API_KEY,
        parameters={"CometApiBaseUrl": feed.base_url, "AllowedPrivateNetworks": allowed_networks},
    )
    return subscribed_archive(stack, monkeypatch)
