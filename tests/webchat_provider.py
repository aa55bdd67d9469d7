"""Webchat, a made-up chat service, as a provider: the minimal example of docs/providers.md.

One module: its account settings, its adapter, its `PROVIDER` value. Adding it to a registry
is all Switchboard needs (tests/switchboard/test_provider_protocol.py serves it next to the
real ones, against the fake service in tests/fakes/webchat_api.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import ClassVar, Literal

import httpx

from channels.adapter import (
    AccountSettings,
    Capability,
    Provider,
    Services,
    Turns,
    reply_in_thread,
)
from channels.errors import DeliveryError, RejectedRequest
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage
from channels.payload import load_json


class WebchatSettings(AccountSettings):
    """`provider: webchat` in bindings.yaml."""

    provider: Literal["webchat"]
    api_url: str = "https://webchat.example/api"
    token: str = ""

    secret_keys: ClassVar[frozenset[str]] = frozenset({"token"})

    def disabled_reason(self) -> str | None:
        return None if self.token else "token is not set"


class WebchatAdapter:
    """One Webchat account: events in by webhook, replies out by its HTTP API."""

    capabilities = frozenset({Capability.THREADS})

    def __init__(self, name: str, settings: WebchatSettings, services: Services) -> None:
        self.name = name
        self.settings = settings
        self.services = services
        self.http = httpx.AsyncClient(base_url=settings.api_url, timeout=10,
                                      headers={"Authorization": f"Bearer {settings.token}"})

    async def start(self) -> None:
        """Nothing long-lived: Webchat calls our webhook."""

    async def stop(self) -> None:
        await self.http.aclose()

    async def webhook(self, action: str, headers: Mapping[str, str], body: bytes) -> Turns:
        given = headers.get("x-webchat-token", "")
        if not hmac.compare_digest(given.encode(), self.settings.token.encode()):
            raise RejectedRequest("bad_secret", "X-Webchat-Token does not match")
        event = load_json(body)  # RejectedRequest (400) when it is not a JSON object
        try:
            message = InboundMessage(
                provider="webchat", account=self.name, event_id=str(event["id"]),
                conversation=str(event["room"]), kind="group", sender=str(event["user"]),
                text=str(event["text"]), message_id=str(event["id"]),
                thread=str(event["thread"]) if event.get("thread") else None,
                mentioned=True)
        except KeyError as missing:
            raise RejectedRequest("malformed", f"the event has no {missing}") from None
        return Turns((message,))

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        return reply_in_thread(message, text)  # in its thread, quoting it

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt:
        try:
            response = await self.http.post(f"/rooms/{out.conversation}/messages", json={
                "text": out.text, "thread": out.thread, "reply_to": out.reply_to})
        except httpx.HTTPError as error:
            raise DeliveryError(f"Webchat unreachable: {error}", permanent=False) from None
        if response.status_code >= 400:
            retry = response.status_code == 429 or response.status_code >= 500
            raise DeliveryError(response.json().get("error", response.reason_phrase),
                                permanent=not retry)
        return DeliveryReceipt(str(response.json()["id"]))


PROVIDER = Provider(
    name="webchat",
    settings=WebchatSettings,
    open=WebchatAdapter,
    capabilities=WebchatAdapter.capabilities,
    webhook_actions={"events": "Webchat events"},
    description="Webchat rooms (an example)",
)
