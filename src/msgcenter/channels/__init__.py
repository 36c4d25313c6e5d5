"""Delivery channels: how a rendered message leaves msgcenter (SPEC §3.7)."""
