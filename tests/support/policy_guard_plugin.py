"""The policy guard (tests/support/policy_guard.py) on for the whole test session, not opt-in:
installed when this module is imported (by tests/conftest.py), exported to every Python subprocess,
and every refusal, even one the code swallowed, fails the test that caused it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .policy_guard import GUARD, IDENTITY_ENV, REFUSALS_ENV, STACKS_ENV, install, subprocess_environment

install()


def _refusals_in(path: str) -> list[str]:
    log = Path(path)
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session", autouse=True)
def policy_guard_in_subprocesses(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every Python subprocess of the session runs under the guard as the operator; each appends
    its refusals to one file the tests read."""
    folder = tmp_path_factory.mktemp("policy-guard")
    path = str(folder / "refusals.jsonl")
    saved = {name: os.environ.get(name) for name in ("PYTHONPATH", IDENTITY_ENV, REFUSALS_ENV, STACKS_ENV)}
    os.environ.update(subprocess_environment(path))  # this process keeps the identity it started with
    os.environ[STACKS_ENV] = str(folder)  # what it learns of each moto_server's stacks, for them
    yield path
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def aws_refusals_fail_the_test(request: pytest.FixtureRequest, policy_guard_in_subprocesses: str) -> Iterator[None]:
    """A call AWS would refuse is a defect even where the code swallowed the error (a fallback on
    ClientError): the test fails with AWS's error, unless it is marked `aws_refusal_expected`."""
    before, before_children = len(GUARD.refusals), len(_refusals_in(policy_guard_in_subprocesses))
    yield
    refused = GUARD.refusals[before:] + _refusals_in(policy_guard_in_subprocesses)[before_children:]
    if refused and request.node.get_closest_marker("aws_refusal_expected") is None:
        pytest.fail("AWS would refuse (tests/support/policy_guard.py): " + "; ".join(refused), pytrace=False)
