"""The registry: every provider this Switchboard speaks, one line each.

The config loader builds the account union from it, the runtime opens accounts through it,
the webhooks route `POST /{provider}/{account}/{action}` by it, the CLI adds provider commands
from it and the console lists it (`GET /api/providers`). This is the only module of
`switchboard` that names a provider; adding one is a line here (docs/providers.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from channels.adapter import Provider
from channels.slack import PROVIDER as SLACK
from channels.telegram import PROVIDER as TELEGRAM
from inbox.provider import PROVIDER as EMAIL

PROVIDERS: Mapping[str, Provider] = MappingProxyType({
    SLACK.name: SLACK,
    TELEGRAM.name: TELEGRAM,
    EMAIL.name: EMAIL,
})

__all__ = ["PROVIDERS"]
