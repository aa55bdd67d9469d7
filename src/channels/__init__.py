"""Provider adapters (Slack, Telegram) and binding rules."""

from channels.errors import DeliveryError, RejectedRequest, SwitchboardError
from channels.messages import InboundMessage, OutboundMessage
from channels.rules import Binding, Match, NoMatch, match

__all__ = [
    "Binding", "DeliveryError", "InboundMessage", "Match", "NoMatch", "OutboundMessage",
    "RejectedRequest", "SwitchboardError", "match",
]
