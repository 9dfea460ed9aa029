"""The model-based tests' budgets (Hypothesis settings profiles) and what they tried (the tally).

`make test` runs the `model-ci` budget: few interleavings, a fixed seed (derandomized), no example
database and no shrinking, so a run in CI is the same every time and a failure is reported at
once. `make soak` sets RUNWAY_ARCHIVER_MODEL=soak for the `model-soak` budget (random seeds, many
more interleavings, failures shrunk); SOAK_EXAMPLES and SOAK_STEPS change it. Either way the
session ends with one line per test: interleavings and steps tried,
rules fired, and what failed.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, settings

PROFILE_VARIABLE = "RUNWAY_ARCHIVER_MODEL"

# Each step calls the embedded AWS and the feed emulator (tens of milliseconds): Hypothesis' time
# limits are for pure functions. `too_slow` measures the time spent making an example, which here
# includes running its steps against the stack; `deadline=None` for the same reason.
_SLOW_STEPS = [HealthCheck.too_slow]
settings.register_profile(
    "model-ci",
    max_examples=int(os.environ.get("CI_EXAMPLES", "8")),
    stateful_step_count=int(os.environ.get("CI_STEPS", "20")),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=_SLOW_STEPS,
    # No shrinking here: each step costs AWS calls, so shrinking a failure takes minutes; the
    # sequence is printed as generated (at most CI_STEPS steps), and `make soak` shrinks.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
settings.register_profile(
    "model-soak",
    max_examples=int(os.environ.get("SOAK_EXAMPLES", "500")),
    stateful_step_count=int(os.environ.get("SOAK_STEPS", "30")),
    deadline=None,
    derandomize=False,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_STEPS,
    # No explain phase: it replays the shrunk failure once per step to say which could vary,
    # minutes of AWS calls for a line the printed sequence already gives.
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
)


def model_settings() -> settings:
    """The budget of this session: `model-soak` when RUNWAY_ARCHIVER_MODEL=soak, else `model-ci`."""
    budget = os.environ.get(PROFILE_VARIABLE, "ci").strip().lower() or "ci"
    if budget not in ("ci", "soak"):
        raise pytest.UsageError(f"{PROFILE_VARIABLE}={budget!r}: use 'ci' or 'soak'")
    return settings.get_profile(f"model-{budget}")


@dataclass
class Tally:
    """What the state machines of one test tried: interleavings (examples, shrinking included), steps, rules."""

    interleavings: int = 0
    steps: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    failure: str | None = None


TALLIES: dict[str, Tally] = {}


def tally(test_name: str) -> Tally:
    return TALLIES.setdefault(test_name, Tally())
