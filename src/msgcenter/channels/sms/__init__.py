"""The SMS channel: SMPP 3.4 to an SMSC (SPEC §3.7)."""
