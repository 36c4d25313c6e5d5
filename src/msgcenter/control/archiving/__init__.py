"""Archiving of the execution instances' history on the control instance (SPEC §4)."""
