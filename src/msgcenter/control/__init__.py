"""The control instance: design, preview and proof, publication to execution instances, archiving (SPEC §4)."""
