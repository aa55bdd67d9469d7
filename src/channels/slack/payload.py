"""The parts of Slack's Events API payloads the adapter reads, as typed models.

Only the fields `channels.slack` reads are declared, so validating one costs microseconds on
the acknowledgement path; everything else in the payload is kept, unread, in the stored turn.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, Tag, model_validator

from channels.payload import ProviderModel

# Ids, timestamps and type words are short; several land in indexed columns (PostgreSQL
# refuses an index entry over ~2.7 kB), so a long one is refused rather than stored.
SlackWord = Annotated[str, Field(max_length=255)]

MESSAGE_EVENTS = frozenset({"message", "app_mention"})


class SlackEvent(ProviderModel):
    """A `message` or `app_mention` event, every field the adapter reads as Slack types it."""

    type: SlackWord
    channel: SlackWord | None = None  # null is taken for absent throughout
    user: SlackWord | None = None
    bot_id: SlackWord | None = None
    text: str | None = None
    ts: SlackWord | None = None
    event_ts: SlackWord | None = None
    thread_ts: SlackWord | None = None
    channel_type: SlackWord | None = None
    subtype: SlackWord | None = None


class SlackOtherEvent(SlackEvent):
    """Any other event (reaction_added, channel_created, user_change, ...): recorded, never
    answered. Their fields differ by type (channel_created's `channel` and user_change's `user`
    are objects), so only `type` must fit; another field is read only where it is a short
    string."""

    @model_validator(mode="before")
    @classmethod
    def _short_strings_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {key: value for key, value in data.items()
                if key == "type" or (isinstance(value, str) and len(value) <= 255)}


def _event_kind(event: Any) -> str:
    """Which model reads an event: strict for messages, lenient for the rest."""
    etype = event.get("type") if isinstance(event, dict) else None
    return "<message>" if isinstance(etype, str) and etype in MESSAGE_EVENTS else "<other>"


class SlackEnvelope(ProviderModel):
    """The request body: `event_callback` (with its event), `url_verification`, or another.
    Validated in one pass, the event with it (no copy of the event dict on the way)."""

    type: SlackWord
    event_id: SlackWord | None = None
    team_id: SlackWord | None = None
    challenge: Annotated[str, Field(max_length=1024)] = ""
    event: Annotated[Annotated[SlackEvent, Tag("<message>")]
                     | Annotated[SlackOtherEvent, Tag("<other>")],
                     Discriminator(_event_kind)] | None = None
