"""A Telegram bot's settings in bindings.yaml (`provider: telegram`)."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

from pydantic import Field

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

    def disabled_reason(self) -> str | None:
        if not self.token:
            return "token is not set"
        if self.mode == "webhook" and not self.webhook_secret:
            return "webhook_secret is not set (mode: webhook needs one)"
        return None
