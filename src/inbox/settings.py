"""The email provider's part of bindings.yaml: each email account (`provider: email`), and the
`smtp:` section of the one SMTP server `serve` runs for all of them.

An account either has inboxes on its own domain, reached through `serve`'s SMTP server
(`mode: smtp`, the default), or reads one existing mailbox over IMAP (`mode: imap`: the
`imap_*` keys, `username`, `password` or `oauth2_token_command`, `address`, `folder` …)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from channels.adapter import AccountSettings, ConfigIssue
from channels.units import Size, Timeout, parse_size

DEFAULT_MAX_MESSAGE = 10 * 1024 * 1024


class EmailSettings(AccountSettings):
    """One email domain: its inboxes, who may write to them, and how replies leave."""

    provider: Literal["email"]
    domain: str = ""
    relay_host: str | None = None
    relay_port: int = 25
    relay_starttls: bool = False
    relay_username: str | None = None
    relay_password: str | None = None
    maildir: str = "./outbound-mail"
    max_message_bytes: Size = Field(default=DEFAULT_MAX_MESSAGE, ge=1024)
    sender_auth: Literal["none", "authentication-results", "dkim"] = "none"
    authserv_id: str | None = None
    dns_resolver: str | None = None  # where `sender_auth: dkim` asks for keys: IP[:port]
    dns_timeout: Timeout = timedelta(seconds=5)
    # local part -> agent, provisioned when serve starts
    inboxes: dict[str, str] = Field(default_factory=dict)
    mode: Literal["smtp", "imap"] = "smtp"
    # --- mode: imap, an existing mailbox ---
    imap_host: str | None = None
    imap_port: int | None = Field(default=None, ge=1, le=65535)  # 993 (tls), else 143
    imap_security: Literal["tls", "starttls", "none"] = "tls"
    username: str | None = None
    password: str | None = None
    oauth2_token_command: str | None = None  # prints a fresh XOAUTH2 access token
    address: str | None = None  # the agent's inbox address; default: username
    agent: str | None = None  # whose inbox the mailbox is (else provision the address)
    folder: str = "INBOX"
    processed_folder: str | None = None  # recorded mail is moved here (created if missing)
    sent_folder: str | None = None  # default: the folder flagged \Sent
    file_sent: bool = True  # APPEND answers to Sent (off: the submission server files them)
    poll_interval: Timeout = timedelta(seconds=60)  # without IDLE
    idle_interval: Timeout = timedelta(minutes=25)  # IDLE is renewed (RFC 2177: < 29 min)
    imap_timeout: Timeout = timedelta(seconds=30)  # one IMAP command
    reconnect_min: Timeout = timedelta(seconds=1)  # backoff after a lost connection
    reconnect_max: Timeout = timedelta(minutes=5)
    use_idle: bool = True  # false: poll even when the server offers IDLE

    secret_keys: ClassVar[frozenset[str]] = frozenset({"relay_password", "password"})

    @model_validator(mode="after")
    def _mailbox(self) -> EmailSettings:
        if self.mode != "imap":
            return self
        if not self.imap_host:
            raise ValueError("mode: imap needs imap_host (the mailbox's IMAP server)")
        if self.imap_security == "none" and not is_loopback(self.imap_host):
            raise ValueError(f"imap_security: none sends the password in clear; it is only "
                             f"allowed to a loopback host, not {self.imap_host}: use tls or "
                             "starttls")
        if self.password and self.oauth2_token_command:
            raise ValueError("set password or oauth2_token_command, not both")
        if self.processed_folder is not None and self.processed_folder == self.folder:
            raise ValueError("processed_folder must differ from folder")
        if not self.mailbox_address:
            raise ValueError("mode: imap needs address (the agent's inbox address) when "
                             "username is not an email address")
        return self

    @property
    def mailbox_address(self) -> str:
        """The mailbox's address, the agent's inbox address (lowercased), or ""."""
        for value in (self.address, self.username):
            if value and "@" in value.strip("@"):
                return value.strip().lower()
        return ""

    @property
    def mail_domain(self) -> str:
        """The domain of reply Message-IDs: `domain`, else the mailbox address's."""
        return self.domain or self.mailbox_address.rpartition("@")[2]

    @property
    def mailbox_port(self) -> int:
        return self.imap_port or (993 if self.imap_security == "tls" else 143)

    @field_validator("dns_resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if value is not None:
            from inbox.dns import parse_resolver  # only then: reading a config need not load DNS

            parse_resolver(value)
        return value

    def disabled_reason(self) -> str | None:
        if self.mode == "imap":
            if not self.username:
                return "username is not set"
            if not (self.password or self.oauth2_token_command):
                return "password (or oauth2_token_command) is not set"
            return None
        return None if self.domain else "domain is not set"


def is_loopback(host: str) -> bool:
    """`localhost` or an address in 127.0.0.0/8 or ::1."""
    import ipaddress

    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class SmtpSettings(BaseModel):
    """What the one SMTP server of `serve` (all email accounts) holds at once, and how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_sessions: int = Field(default=50, ge=1)  # connections beyond this hear 421
    max_inflight_bytes: Size = Field(default=64 * 2**20, ge=1024)  # DATA held by all sessions
    max_line_bytes: Size = Field(default=64 * 2**10, ge=1001, le=2**24)
    idle_timeout: Timeout = timedelta(minutes=5)  # silence between commands or DATA lines
    data_timeout: Timeout = timedelta(minutes=10)  # one DATA, however slowly it trickles
    session_timeout: Timeout = timedelta(minutes=30)  # one connection, however busy


def capacity_issues(smtp: Mapping[str, Any],
                    accounts: Mapping[str, Mapping[str, Any]]) -> list[ConfigIssue]:
    """An SMTP server whose in-flight budget is smaller than a message an account takes would
    answer that message 452 forever. Read on the raw config, beside its type errors."""
    try:
        budget = parse_size(smtp.get("max_inflight_bytes", SmtpSettings().max_inflight_bytes))
    except ValueError:
        return []  # reported by the model
    issues: list[ConfigIssue] = []
    for name, account in accounts.items():
        try:
            largest = parse_size(account.get("max_message_bytes", DEFAULT_MAX_MESSAGE))
        except ValueError:
            continue
        if isinstance(budget, int) and isinstance(largest, int) and budget < largest:
            at = ("smtp", "max_inflight_bytes") if "max_inflight_bytes" in smtp else \
                ("accounts", name, "max_message_bytes")
            issues.append(ConfigIssue(
                at, f"{budget} bytes is less than max_message_bytes of account {name} "
                f"({largest}): one such message could never be taken; raise "
                "max_inflight_bytes or lower max_message_bytes",
                key=("smtp", "max_inflight_bytes")))
    return issues
