"""Helpers the tests import (fixtures stay in the conftest.py files): `samples` (API_KEY, the events/
samples) and `archive` (the deployed stack as a test drives it, the simulated clock, the test times)."""
