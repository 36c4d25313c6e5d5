"""Execution instances registered on a control instance (external accounts, SPEC §4)."""
