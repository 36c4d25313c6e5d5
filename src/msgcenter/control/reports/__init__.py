"""Reports of the control instance: service level, processing time, event history."""
