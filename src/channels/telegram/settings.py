"""A Telegram bot's settings in bindings.yaml (`provider: telegram`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from channels.adapter import AccountSettings
from channels.live import LiveSettings
from channels.units import Timeout


class TelegramSettings(AccountSettings, LiveSettings):
    """One bot: updates by webhook (checked with `webhook_secret`) or by long polling.
    `typing` sends the typing action while the agent works; `streaming` shows the answer as
    it is written (a draft in private chats, an edited message in groups)."""

    provider: Literal["telegram"]
    token: str = ""
    webhook_secret: str = ""
    base_url: str = "https://api.telegram.org/bot"
    mode: Literal["webhook", "polling"] = "webhook"
    poll_timeout: int = Field(default=25, ge=0, le=50)
    typing_interval: Timeout = timedelta(seconds=4)  # the typing action lasts 5 s

    secret_keys: ClassVar[frozenset[str]] = frozenset({"token", "webhook_secret"})

    @field_validator("webhook_secret")
    @classmethod
    def _usable_secret(cls, value: str) -> str:
        # Telegram's setWebhook refuses any other secret_token; the account would not start
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("webhook_secret must be 1-256 characters of A-Z, a-z, 0-9, _ "
                             "and - (Telegram refuses others)")
        return value

    def disabled_reason(self) -> str | None:
        if not self.token:
            return "token is not set"
        if self.mode == "webhook" and not self.webhook_secret:
            return "webhook_secret is not set (mode: webhook needs one)"
        return None
