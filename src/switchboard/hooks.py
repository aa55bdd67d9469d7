"""Signed outbound webhooks (`webhooks:` in the config): which events there are, what a
configured webhook is, and how a delivery is signed. docs/outbound-webhooks.md.

The receiver checks `X-Switchboard-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." +
raw body)>` with `X-Switchboard-Timestamp`, and uses `delivery_id` (also in
`X-Switchboard-Delivery`) as its idempotency key: every retry of one event carries the same.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, field_validator

# Every event a webhook may subscribe to. To add one: name it here, and call
# `switchboard.store.hooks.emit(db, "<name>", data)` inside the transaction that causes it.
EVENTS: tuple[str, ...] = (
    "turn.received",  # a message reached us and was recorded (acknowledged)
    "turn.delivered",  # the reply to a turn reached the provider
    "turn.failed",  # a turn's agent or delivery failed for good
    "session.created",
    "session.state_changed",
    "session.message.created",  # any transcript entry: user, agent, system, interaction
    "email.received",  # an email reached an inbox (with turn.received)
    "interaction.requested",
    "interaction.answered",
    "interaction.expired",
    "session.handoff_requested",  # the agent asked for a human (issue 22, section 4)
)
ALL = "*"
# Providers whose received turns are also announced under an event of their own.
RECEIVED_AS: Mapping[str, str] = {"email": "email.received"}

SIGNATURE_VERSION = "v1"
BODY_SHOWN = 500  # characters of the receiver's answer kept per attempt


class WebhookConfig(BaseModel):
    """One entry of `webhooks:`: where events go, which ones, and the secret that signs them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    events: tuple[str, ...]
    secret: str

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        example = "write it as https://hooks.example.com/switchboard"
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{shown_url(value)!r} is not an http(s) URL; {example}")
        try:  # what the delivery's HTTP client would refuse at every attempt (a bad port)
            port = httpx.URL(value).port
        except httpx.InvalidURL as error:
            raise ValueError(f"{shown_url(value)!r} is not a usable URL ({error}); "
                             f"{example}") from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"{shown_url(value)!r}: port {port} is not 1 to 65535")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError(f'list at least one event, or "{ALL}" for all of them')
        unknown = [event for event in value if event != ALL and event not in EVENTS]
        if unknown:
            raise ValueError(f"unknown event{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))}; use {ALL!r} or any of "
                             f"{', '.join(EVENTS)}")
        return value

    @field_validator("secret")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty: the receiver verifies every delivery with "
                             "it (write e.g. ${SWITCHBOARD_WEBHOOK_SECRET})")
        return value

    def wants(self, event: str) -> bool:
        return ALL in self.events or event in self.events


def subscriptions(webhooks: Iterable[WebhookConfig]) -> dict[str, tuple[str, ...]]:
    """Event name → the URLs subscribed to it (each URL once, in config order)."""
    out: dict[str, tuple[str, ...]] = {}
    hooks = list(webhooks)
    for event in EVENTS:
        urls = tuple(dict.fromkeys(hook.url for hook in hooks if hook.wants(event)))
        if urls:
            out[event] = urls
    return out


def webhook_for(webhooks: Iterable[WebhookConfig], url: str, event: str
                ) -> WebhookConfig | None:
    """The configured webhook a stored delivery goes to now (its secret may have changed
    since, by a reload); None when no webhook for that URL takes that event any more."""
    return next((hook for hook in webhooks if hook.url == url and hook.wants(event)), None)


def body(delivery_id: str, event: str, at: str, data: Mapping[str, Any]) -> bytes:
    """The JSON body of a delivery: the same bytes on every attempt."""
    return json.dumps({"delivery_id": delivery_id, "event": event, "at": at, "data": data},
                      separators=(",", ":"), ensure_ascii=False, default=str).encode()


def signature(secret: str, timestamp: int, raw: bytes) -> str:
    """`v1=` and the hex HMAC-SHA256 of `timestamp + "." + raw body` under `secret`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={digest.hexdigest()}"


def headers(secret: str, delivery_id: str, event: str, timestamp: int,
            raw: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json",
            "User-Agent": "Switchboard-Webhooks/1",
            "X-Switchboard-Delivery": delivery_id,
            "X-Switchboard-Event": event,
            "X-Switchboard-Timestamp": str(timestamp),
            "X-Switchboard-Signature": signature(secret, timestamp, raw)}


def shown_url(url: str) -> str:
    """A webhook's URL as the API shows it: without credentials or query (either may hold a
    token)."""
    match = re.match(r"^(https?://)(?:[^@/]*@)?([^/?#]*)([^?#]*)", url)
    return "".join(match.groups()) if match else url


__all__ = ["ALL", "EVENTS", "RECEIVED_AS", "WebhookConfig", "body", "headers", "shown_url",
           "signature", "subscriptions", "webhook_for"]
