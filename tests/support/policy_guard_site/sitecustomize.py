"""Loaded at the start of every Python subprocess the test session starts (its PYTHONPATH names
this folder): the policy guard, as the identity the session gave (the operator)."""

import os

if os.environ.get("RUNWAY_ARCHIVER_POLICY_GUARD_IDENTITY"):
    from tests.support import policy_guard

    policy_guard.install()
