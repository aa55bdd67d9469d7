"""Provider adapters (Slack, Telegram) and binding rules."""

from channels.messages import (
    DeliveryError,
    InboundMessage,
    OutboundMessage,
    RejectedRequest,
    SwitchboardError,
)
from channels.rules import Binding, Match, NoMatch, match

__all__ = [
    "Binding", "DeliveryError", "InboundMessage", "Match", "NoMatch", "OutboundMessage",
    "RejectedRequest", "SwitchboardError", "match",
]
