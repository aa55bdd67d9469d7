"""Switchboard: connects agents to chat apps and email, and records every turn."""

__version__ = "0.1.0"
