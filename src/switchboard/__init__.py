"""Switchboard: connects agents to Slack, Telegram and email, and records every turn."""

__version__ = "0.1.0"
