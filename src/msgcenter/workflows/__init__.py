"""Technical workflows of the execution instance (SPEC §3.4) and the runner that drives them."""
