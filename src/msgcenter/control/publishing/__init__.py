"""Publication of templates to the execution instances, and its catch-up (SPEC §4)."""
