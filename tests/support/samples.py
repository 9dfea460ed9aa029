"""What the tests feed the functions: the emulator's API key and the sample events of events/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "events"
API_KEY = "test-key-5f0c"  # the emulator's key; tests assert it never shows in logs
# Runway's own API's key (the emulator's Runway origin): a Provider=runway stack's ApiKeySecret holds it,
# its GatewayApiKeySecret API_KEY; each must reach its own API only.
RUNWAY_API_KEY = "runway-key-9a3e"


def load_event(name: str) -> dict[str, Any]:
    """A sample from events/ (the same files the README's `sam local invoke` examples use)."""
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded
