"""Slack as a provider: Events API webhooks, Socket Mode, replies in threads.

`settings` is the account's part of bindings.yaml, `client` speaks Slack's wire (signature,
payload models, Web API), `adapter` runs one account. The client and the adapter load
slack-sdk, so they are imported when an account opens, not when the config is read.
"""

from __future__ import annotations

from channels.adapter import Capability, Provider, opens
from channels.slack.settings import SlackSettings

PROVIDER = Provider(
    name="slack",
    settings=SlackSettings,
    open=opens("channels.slack.adapter:SlackAdapter"),
    capabilities=frozenset(Capability),  # threads, edit, stream, typing, files, buttons
    webhook_actions={"events": "Slack Events API",
                     "commands": "Slack slash command (/agent new, end, pause, resume, agents, "
                                 "transfer)",
                     "interactions": "Slack interactivity: clicks on interaction buttons "
                                     "(block_actions)"},
    description="Slack apps: Events API over HTTP or Socket Mode",
    # Slack retries an event three times unless an error answer says not to
    refusal_headers={"X-Slack-No-Retry": "1"},
)

__all__ = ["PROVIDER", "SlackSettings"]
