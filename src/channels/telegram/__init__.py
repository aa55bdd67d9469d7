"""Telegram as a provider: webhook or long-polling updates, replies in topics and quotes.

`settings` is the account's part of bindings.yaml, `client` speaks the Bot API (through
python-telegram-bot), `adapter` runs one bot, `commands` adds `switchboard telegram …`. The
client and the adapter load PTB, so they are imported when an account opens.
"""

from __future__ import annotations

from channels.adapter import (
    AccountCommand,
    Capability,
    CommandOption,
    Provider,
    SecretPattern,
    opens,
)
from channels.telegram.commands import set_webhook
from channels.telegram.settings import TelegramSettings

PROVIDER = Provider(
    name="telegram",
    settings=TelegramSettings,
    open=opens("channels.telegram.adapter:TelegramAdapter"),
    capabilities=frozenset(Capability),  # threads, edit, stream, typing, files, buttons
    webhook_actions={"webhook": "Telegram webhook"},
    commands={"set-webhook": AccountCommand(
        set_webhook, "Register the webhook with Telegram, with the account's secret token.",
        (CommandOption("url", "Public https URL of /telegram/ACCOUNT/webhook"),))},
    description="Telegram bots: webhook or long polling",
    # The Bot API puts the token in every request path, so every library error quoting a URL
    # quotes it: `bot<digits>:<token>`.
    secret_patterns=(SecretPattern("bot", r"bot(\d{3,}):[A-Za-z0-9_-]{10,}", r"bot\1:{mask}"),),
)

__all__ = ["PROVIDER", "TelegramSettings"]
