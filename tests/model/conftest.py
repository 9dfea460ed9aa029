"""The tally of the model-based tests at the end of the session: interleavings and steps tried, rules
fired, and what failed (tests/model/budget.py holds the budgets)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.model.budget import PROFILE_VARIABLE, TALLIES, Tally


@pytest.fixture(autouse=True)
def the_functions_log_level_is_given_back() -> Iterator[None]:
    """The model runs the functions with POWERTOOLS_LOG_LEVEL=ERROR, and a function reads it once
    per process, on its first call (as a cold start does): if these tests made that first call, every
    test after them in the process would find the level at ERROR and the handlers' INFO and WARNING
    lines gone (the fault and dialect tests read them). The level is given back as it was."""
    from runway_archiver_lambda.observability import logger

    level = logger.log_level
    yield
    logger.setLevel(level)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = report.nodeid.rpartition("::")[2]
    if report.when == "call" and report.failed and name in TALLIES:
        lines = [line[2:].strip() for line in report.longreprtext.splitlines() if line.startswith("E ")]
        TALLIES[name].failure = (lines[0] if lines else "failed")[:300]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLIES:
        return
    budget = os.environ.get(PROFILE_VARIABLE, "ci") or "ci"
    terminalreporter.section(f"model-based tests of the task life cycle ({budget} budget)")
    total = Tally()
    for name, counted in sorted(TALLIES.items()):
        total.interleavings += counted.interleavings
        total.steps += counted.steps
        rules = ", ".join(f"{rule} {n}" for rule, n in sorted(counted.rules.items()))
        notes = ", ".join(f"{note} {n}" for note, n in sorted(counted.notes.items()))
        terminalreporter.write_line(
            f"{name}: {counted.interleavings} interleavings, {counted.steps} steps; "
            f"{counted.failure or 'no invariant broken'}"
        )
        terminalreporter.write_line(f"    rules: {rules}")
        if notes:
            terminalreporter.write_line(f"    seen: {notes}")
    failed = sum(1 for counted in TALLIES.values() if counted.failure)
    terminalreporter.write_line(
        f"in all: {total.interleavings} interleavings, {total.steps} steps, {failed} test(s) with an invariant broken"
    )
