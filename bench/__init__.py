"""Benchmarks: figures printed as ratios, not tests (see README, Performance)."""

import os

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # benchmarks print figures, not the runs' logs
