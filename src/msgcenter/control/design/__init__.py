"""Design of messages on a control instance: event types, templates, blocks, seeds, preview and proofs (SPEC §4)."""
