"""The ASGI applications and what they share (error rendering, health, metrics)."""
