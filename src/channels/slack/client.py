"""Slack: verify and parse Events API requests, deliver replies with slack-sdk.

Inbound requests are verified (on the raw bytes, as slack-sdk's `SignatureVerifier` does after
decoding them, which fails on a body that is not UTF-8) and parsed here rather than in a bolt
`AsyncApp`, because bolt acknowledges before its listener runs and we acknowledge only after the
turn is durably recorded. Payloads are read through the models in `channels.slack.payload`.
Outbound goes through `AsyncWebClient` on the account's `api_url`. Socket Mode uses slack-sdk's
`SocketModeClient` and the same parsing.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from channels.errors import DeliveryError, RejectedRequest
from channels.messages import ConversationKind, InboundMessage, OutboundMessage
from channels.payload import load_json, parse, storable
from channels.slack.files import SlackFiles, message_files
from channels.slack.payload import MESSAGE_EVENTS, SlackEnvelope, SlackEvent
from channels.slack.text import readable

log = logging.getLogger(__name__)

# Slack errors worth another attempt; every other `error` code is permanent.
TRANSIENT_ERRORS = frozenset({
    "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout",
    "team_added_to_org",
})
# Subtypes that still carry a person's message.
USER_SUBTYPES = frozenset({None, "thread_broadcast", "file_share", "me_message"})
STALE_AFTER = 60 * 5

EventSink = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]


def _kind(channel: str, channel_type: str | None) -> ConversationKind:
    if channel_type == "im" or (channel_type is None and channel.startswith("D")):
        return "dm"
    if channel_type in {"mpim", "group"} or (channel_type is None and channel.startswith("G")):
        return "group"
    return "channel"


class SlackAccount:
    """One Slack app in one workspace: its verifier, its Web API client, its bot identity."""

    provider = "slack"

    def __init__(self, name: str, *, bot_token: str, signing_secret: str = "",
                 api_url: str = "https://slack.com/api/", app_token: str = "",
                 allow_bots: bool = False) -> None:
        self.name = name
        self.allow_bots = allow_bots
        self.app_token = app_token
        self._signing_secret = signing_secret.encode()
        self.client = AsyncWebClient(token=bot_token, base_url=api_url, timeout=10)
        self.files = SlackFiles(self.client, api_url)
        self.bot_user_id: str | None = None
        self.bot_id: str | None = None
        self._socket: Any = None
        self._live: AsyncWebClient | None = None

    async def start(self) -> None:
        """Learn the bot's own ids (auth.test), so its own messages are never answered."""
        if self.client.session is None:
            # one connection pool per account; without it slack-sdk opens a session per call
            self.client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10),
                connector=aiohttp.TCPConnector(limit=64))
        try:
            identity = await self.client.auth_test()
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("slack account %s: auth.test failed (%s); will retry on demand",
                        self.name, _words(error))
            return
        self.bot_user_id = identity.get("user_id")
        self.bot_id = identity.get("bot_id")

    @property
    def live_client(self) -> AsyncWebClient:
        """The Web API client of live replies: the same connections, but no automatic retry
        of a call whose answer was lost (a stream started or appended to twice); the caller
        finds out what happened instead (`channels.slack.live`)."""
        if self._live is None:
            self._live = AsyncWebClient(token=self.client.token, base_url=self.client.base_url,
                                        timeout=self.client.timeout, session=self.client.session,
                                        retry_handlers=[])
        return self._live

    async def close(self) -> None:
        if self._socket is not None:
            await self._socket.close()
        session = getattr(self.client, "session", None)
        if session is not None:
            await session.close()

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Signature and freshness of an Events API request (Slack's v0 HMAC scheme), checked
        on the raw bytes: a body is read only once it is known to come from Slack."""
        if not self._signing_secret:
            raise RejectedRequest("bad_signature", "no signing secret configured")
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp or not signature:
            raise RejectedRequest("bad_signature", "missing X-Slack-Signature or "
                                  "X-Slack-Request-Timestamp")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            raise RejectedRequest("bad_signature", "X-Slack-Request-Timestamp is not a number "
                                  "of seconds")
        age = int(time.time()) - int(timestamp)
        if age > STALE_AFTER:
            raise RejectedRequest("stale", f"request timestamp is {age}s old; Slack requests "
                                  "older than 5 minutes are refused")
        if age < -STALE_AFTER:
            raise RejectedRequest("stale", f"request timestamp is {-age}s in the future; "
                                  "requests more than 5 minutes ahead of this server's clock "
                                  "are refused (is its clock right?)")
        signed = b"v0:" + timestamp.encode() + b":" + body
        expected = b"v0=" + hmac.digest(self._signing_secret, signed, "sha256").hex().encode()
        if not hmac.compare_digest(expected, signature.encode("utf-8", "replace")):
            raise RejectedRequest("bad_signature", "signature does not match the signing "
                                  "secret")

    @staticmethod
    def parse_body(body: bytes, content_type: str = "") -> dict[str, Any]:
        """A verified body as a dict: JSON (events), or a form (slash commands; interactive
        payloads carry their JSON in the `payload` field). RejectedRequest when malformed."""
        if "application/x-www-form-urlencoded" not in content_type:
            return load_json(body)
        try:
            fields = parse_qs(body.decode("utf-8"), max_num_fields=200)
        except UnicodeDecodeError as error:
            raise RejectedRequest("malformed", f"the form body is not UTF-8 (byte "
                                  f"{error.start} is not valid)") from None
        except ValueError as error:  # more fields than any Slack form has
            raise RejectedRequest("malformed", f"the form body is refused: {error}") from None
        form = {key: values[0] for key, values in fields.items()}
        return load_json(form["payload"].encode(), "payload field") if "payload" in form \
            else form

    @staticmethod
    def envelope(payload: dict[str, Any]) -> SlackEnvelope:
        """The request's type (and event, challenge); RejectedRequest when a field is mistyped."""
        return parse(SlackEnvelope, payload)

    def to_inbound(self, payload: dict[str, Any],
                   envelope: SlackEnvelope | None = None) -> InboundMessage:
        """An `event_callback` payload as one InboundMessage; non-messages carry ignore_reason.
        RejectedRequest (400) when a field it reads has the wrong type."""
        envelope = envelope or self.envelope(payload)
        event = envelope.event
        if event is None or not envelope.event_id:
            raise RejectedRequest("malformed", "event_callback without event or event_id")
        channel, ts, text = event.channel or "", event.ts or event.event_ts or "", event.text or ""
        thread = event.thread_ts if event.thread_ts and event.thread_ts != ts else None
        mention = bool(self.bot_user_id and f"<@{self.bot_user_id}>" in text)
        kind = _kind(channel, event.channel_type)
        extra: dict[str, Any] = {"team": envelope.team_id, "event_type": event.type}
        raw_event = payload.get("event")
        files = message_files(raw_event) if isinstance(raw_event, dict) else []
        if files:
            extra["files"] = files
        return InboundMessage(
            provider="slack", account=self.name, event_id=envelope.event_id,
            conversation=channel, kind=kind, sender=event.user or event.bot_id or "",
            text=text, message_id=ts, thread=thread,
            mentioned=event.type == "app_mention" or mention, starts_thread=kind != "dm",
            ignore_reason=self._ignore_reason(event),
            raw={k: v for k, v in payload.items() if k != "token"},  # the legacy verification token
            extra={**extra, **_agent_text(text, self.bot_user_id),
                   # another bot let in by allow_bots: its replies are budgeted (loop_guard)
                   **({"from_bot": True} if event.bot_id or event.subtype == "bot_message"
                      else {})},
        )

    def _ignore_reason(self, event: SlackEvent) -> str | None:
        if event.type not in MESSAGE_EVENTS:
            return f"a Slack {event.type} event, which is not a message to answer"
        own = {self.bot_user_id, self.bot_id} - {None}
        if event.user in own or event.bot_id in own:
            return "the bot's own message; it never answers itself"
        if event.subtype == "bot_message" or event.bot_id:
            if not self.allow_bots:
                return "a message from another bot; allow_bots is off for this account"
        elif event.subtype not in USER_SUBTYPES:
            return f"a message with subtype {event.subtype}, which is not a person's new message"
        if not event.user and not event.bot_id:
            return "a message without a sender"
        return None

    async def deliver(self, out: OutboundMessage) -> str:
        """chat.postMessage into the thread; Slack's `ts` back, or its error word for word."""
        try:
            response = await self.client.chat_postMessage(
                channel=out.conversation, text=out.text, thread_ts=out.thread)
        except SlackApiError as error:
            raise delivery_error(error) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"Slack unreachable: {_words(error)}", permanent=False) from None
        except (SlackRequestError, ValueError, TypeError) as error:  # the same every attempt
            raise DeliveryError(f"the reply could not be sent as built: {_words(error)}",
                                permanent=True) from None
        return str(response.get("ts") or "")

    async def open_dm(self, user: str) -> str:
        """conversations.open with one user: the id of the bot's DM with them (opened if it
        was not), or Slack's error word for word (`user_not_found`, `cannot_dm_bot`)."""
        try:
            response = await self.client.conversations_open(users=user)
        except SlackApiError as error:
            raise delivery_error(error) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"Slack unreachable: {_words(error)}", permanent=False) from None
        channel = response.get("channel")
        channel_id = channel.get("id") if isinstance(channel, dict) else None
        if not channel_id:
            raise DeliveryError("conversations.open answered without a channel id",
                                permanent=False)
        return str(channel_id)

    async def start_socket_mode(self, sink: EventSink,
                                interactive: EventSink | None = None) -> None:
        """Receive events over Socket Mode; each is acknowledged after `sink` recorded it.
        `interactive` takes the interactivity payloads (`block_actions`, the same JSON the
        Interactivity request URL gets in its `payload=` field), acknowledged once decided."""
        from slack_sdk.socket_mode.aiohttp import SocketModeClient
        from slack_sdk.socket_mode.request import SocketModeRequest
        from slack_sdk.socket_mode.response import SocketModeResponse

        client = SocketModeClient(app_token=self.app_token, web_client=self.client)

        async def listener(socket: SocketModeClient, request: SocketModeRequest) -> None:
            if request.type == "interactive" and interactive is not None:
                try:
                    await interactive(storable(request.payload, "Socket Mode payload"),
                                      {"via": "socket"})
                except RejectedRequest as error:
                    log.warning("slack account %s: refused a Socket Mode interaction: %s",
                                self.name, error)
                await socket.send_socket_mode_response(
                    SocketModeResponse(envelope_id=request.envelope_id))
                return
            if request.type != "events_api":
                await socket.send_socket_mode_response(
                    SocketModeResponse(envelope_id=request.envelope_id))
                return
            extra = {"retry_num": request.retry_attempt, "retry_reason": request.retry_reason,
                     "via": "socket"}
            try:  # slack-sdk parsed it with plain json.loads: check it as a webhook body is
                await sink(storable(request.payload, "Socket Mode payload"), extra)
            except RejectedRequest as error:  # acknowledged all the same: a retry is no better
                log.warning("slack account %s: refused a Socket Mode event: %s", self.name, error)
            await socket.send_socket_mode_response(
                SocketModeResponse(envelope_id=request.envelope_id))

        client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
        await client.connect()
        self._socket = client


def _agent_text(text: str, bot_user_id: str | None) -> dict[str, str]:
    """What the agent reads, when it differs from the raw text kept on the turn: without
    the bot's own `<@U…>`, other references by name (`text.readable`)."""
    clean = readable(text, bot_user_id)
    return {"agent_text": clean} if clean != text else {}


def _words(error: BaseException) -> str:
    return str(error) or type(error).__name__


def delivery_error(error: SlackApiError) -> DeliveryError:
    """Slack's refusal as a DeliveryError: its error word, retry_after from a 429."""
    response = error.response
    status = getattr(response, "status_code", 0)
    data = getattr(response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    if status == 429:
        retry = (response.headers or {}).get("Retry-After") or \
            (response.headers or {}).get("retry-after")
        try:
            delay = float(retry) if retry is not None else None
        except ValueError:
            delay = None
        return DeliveryError(code or "ratelimited", permanent=False, retry_after=delay)
    if status >= 500:
        return DeliveryError(code or f"HTTP {status} from Slack", permanent=False)
    code = code or f"HTTP {status} from Slack"
    return DeliveryError(code, permanent=code not in TRANSIENT_ERRORS)
