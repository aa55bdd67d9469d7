"""Whether a matched turn may reach its agent: the DM policy (open, allowlist, pairing), rate
limits per sender and per conversation, and the loop guard for other bots (and, on email,
every correspondent). The decisions are `channels.guards`'; this module counts and looks up
what they need, and says what the person is told.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from channels.adapter import AccountSettings
from channels.guards import loop_reason, rate_notice, rate_reason
from channels.messages import InboundMessage, OutboundMessage
from channels.rules import Binding, sender_allowed
from switchboard.store import Store


@dataclass(frozen=True)
class Refusal:
    """The turn is ignored for `reason`; `notice` (if any) is sent to the person."""

    reason: str
    notice: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def outbound_json(out: OutboundMessage) -> dict[str, Any]:
    """Where a reply goes, kept to send a later notice there (the pairing's "you are in")."""
    return {"provider": out.provider, "account": out.account, "conversation": out.conversation,
            "thread": out.thread, "reply_to": out.reply_to, "extra": dict(out.extra)}


class Admission:
    """The checks between a binding's match and the session, in order: DM policy, rate
    limits, loop guard. The first that refuses decides."""

    def __init__(self, accounts: Mapping[str, AccountSettings], store: Store,
                 reply_to: Callable[[InboundMessage, str], OutboundMessage]) -> None:
        self.accounts = accounts
        self.store = store
        self.reply_to = reply_to

    async def check(self, turn_id: str, message: InboundMessage, binding: Binding
                    ) -> Refusal | None:
        account = self.accounts.get(message.account)
        if account is None:
            return None
        refusal = await self.dm_policy(turn_id, message, binding, account)
        if refusal is None:
            refusal = await self.rate_limit(message, binding, account)
        if refusal is None:
            refusal = await self.loop_guard(message, account)
        if refusal is not None and message.extra.get("from_bot"):
            return Refusal(refusal.reason, None, refusal.detail)  # a notice to a bot feeds a loop
        return refusal

    async def dm_policy(self, turn_id: str, message: InboundMessage, binding: Binding,
                        account: AccountSettings) -> Refusal | None:
        policy = binding.dm_policy or account.dm_policy
        if message.kind != "dm" or policy == "open":
            return None
        if policy == "allowlist":
            if (binding.allow_senders and sender_allowed(message.sender, binding.allow_senders)) \
                    or await self.store.pairings.approved(message.account, message.sender):
                return None
            return Refusal(f"sender {message.sender} may not message account {message.account} "
                           "(dm_policy: allowlist: only allow_senders and approved senders)")
        reply = outbound_json(self.reply_to(message, ""))
        verdict = await self.store.pairings.request(message.account, message.sender,
                                                    message.sender_name, turn_id, reply)
        if verdict.admit:
            return None
        return Refusal(verdict.reason, verdict.notice,
                       {"pairing_code": verdict.code} if verdict.code else {})

    async def rate_limit(self, message: InboundMessage, binding: Binding,
                         account: AccountSettings) -> Refusal | None:
        limits = binding.rate_limit or account.rate_limit
        if limits is None:
            return None
        owner = f"binding:{binding.name}" if binding.rate_limit else f"account:{message.account}"
        checks = ((f"sender {message.sender}", f"sender:{message.sender}", limits.per_sender),
                  (f"conversation {message.conversation}",
                   f"conversation:{message.conversation}", limits.per_conversation))
        for who, key, rate in checks:
            if rate is None:
                continue
            count = await self.store.counters.hit(f"rate:{owner}:{key}", rate.window)
            if count.count > rate.count:
                first = count.count == rate.count + 1  # one notice per window
                return Refusal(rate_reason(who, count.count, rate),
                               rate_notice(rate) if first else None,
                               {"rate_limit": rate.text, "count": count.count})
        return None

    async def loop_guard(self, message: InboundMessage, account: AccountSettings
                         ) -> Refusal | None:
        guard = account.loop_guard
        per_bot = guard.applies_to == "bots"
        if per_bot and not message.extra.get("from_bot"):
            return None
        where = f" in {message.conversation}" if per_bot else ""
        key = f"loop:{message.account}:{message.conversation if per_bot else ''}:" \
              f"{message.sender}"
        count = await self.store.counters.hit(key, guard.window, limit=guard.replies,
                                              cooldown=guard.cooldown)
        if count.blocked_until is None:
            return None
        who = f"bot {message.sender}" if per_bot else message.sender
        return Refusal(loop_reason(who, where, guard, count.blocked_until),
                       detail={"loop_guard": guard.replies,
                               "until": count.blocked_until.isoformat()})
