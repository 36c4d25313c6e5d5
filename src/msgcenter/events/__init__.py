"""Events: model, statuses and validation (no I/O)."""
