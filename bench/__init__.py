"""Benchmarks: figures printed as ratios, not tests (see docs/performance.md)."""

import os

# The template's service name before any benchmark imports the Lambda code: Powertools names a
# module's child logger after the service at import time, and a child named after another service
# than the handler's logger is orphaned (its first log call raises).
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "runway-archiver")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "ERROR")  # benchmarks print figures, not the runs' logs
