"""Operators, sessions, security zones and failed-logon throttling (SPEC §3.9)."""
