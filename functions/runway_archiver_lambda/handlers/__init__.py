"""The three Lambda entry points, one module per function: poller, worker, callback."""
