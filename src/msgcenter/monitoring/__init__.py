"""Health checks and Prometheus metrics (SPEC §3.10)."""
