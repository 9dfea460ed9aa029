"""Benchmarks: figures printed as ratios, not tests (see docs/performance.md)."""

import os

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # benchmarks print figures, not the runs' logs
