"""Turning claimed messages into attempts: render, hand to a channel, record the outcome."""
