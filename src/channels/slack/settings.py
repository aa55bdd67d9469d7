"""A Slack account's settings in bindings.yaml (`provider: slack`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from channels.adapter import AccountSettings
from channels.live import LiveSettings


class SlackSettings(AccountSettings, LiveSettings):
    """One Slack app in one workspace: Events API over HTTP, or Socket Mode. `typing` sets
    the thread's status while the agent works (or, where Slack refuses it, adds
    `ack_reaction` to the message until the reply); `streaming` shows the answer as written."""

    provider: Literal["slack"]
    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    api_url: str = "https://slack.com/api/"
    mode: Literal["http", "socket"] = "http"
    slash_command: str | None = None
    allow_bots: bool = False
    ack_reaction: str | None = "eyes"
    status_text: str = "is thinking…"

    secret_keys: ClassVar[frozenset[str]] = frozenset({"bot_token", "signing_secret",
                                                        "app_token"})

    def disabled_reason(self) -> str | None:
        if not self.bot_token:
            return "bot_token is not set"
        if self.mode == "http" and not self.signing_secret:
            return "signing_secret is not set"
        if self.mode == "socket" and not self.app_token:
            return "app_token is not set (mode: socket needs one)"
        return None
