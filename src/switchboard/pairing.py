"""The operators' side of pairing: list the codes strangers were given, approve or deny one,
revoke a sender. Used by the API (in `serve`, which delivers "you are in" at once) and by the
CLI (which leaves that notice in the outbox for a running `serve`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta

from channels.guards import WRONG_CODES, WRONG_WINDOW, YOU_ARE_IN, normalize_code
from channels.messages import OutboundMessage
from switchboard.errors import ActionRefused, NoSuchPairing, OutOfScope, TooManyAttempts
from switchboard.store import OutboxEntry, PairingRecord, Store


class Pairings:
    """Pairing decisions, bounded: an operator who enters WRONG_CODES wrong codes within
    WRONG_WINDOW is refused until the window is over; each wrong code is in the audit log."""

    def __init__(self, store: Store,
                 deliver: Callable[[OutboxEntry], Awaitable[None]] | None = None,
                 lease: timedelta | None = None) -> None:
        self.store = store
        self.deliver = deliver
        self.lease = lease

    async def listing(self, accounts: Collection[str] | None = None) -> list[PairingRecord]:
        """Every pairing, or those of `accounts` (an operator limited to some agents)."""
        return [p for p in await self.store.pairings.listing()
                if accounts is None or p.account in accounts]

    async def approve(self, code: str, actor: str, accounts: Collection[str] | None = None
                      ) -> PairingRecord:
        """The sender may talk to the account's agents from now on, and is told so.
        `accounts`: the only accounts the actor may decide for (None: all)."""
        decided, notice_turn = await self._decide(code, "approved", actor, accounts)
        if notice_turn is not None:
            out = OutboundMessage(**{**decided.reply, "text": YOU_ARE_IN})
            row = await self.store.outbox.record_notice(notice_turn, out, lease=self.lease,
                                                        leased=self.deliver is not None)
            if self.deliver is not None:
                await self.deliver(row)
        return decided

    async def deny(self, code: str, actor: str, accounts: Collection[str] | None = None
                   ) -> PairingRecord:
        """The sender is not answered, and pairs again only after `revoke`."""
        return (await self._decide(code, "denied", actor, accounts))[0]

    async def revoke(self, account: str, sender: str, actor: str,
                     accounts: Collection[str] | None = None) -> None:
        _in_scope(account, actor, accounts)
        if not await self.store.pairings.revoke(account, sender, actor):
            raise NoSuchPairing(f"sender {sender} has no pairing on account {account}")

    async def _decide(self, text: str, status: str, actor: str,
                      accounts: Collection[str] | None) -> tuple[PairingRecord, str | None]:
        key = f"pairing-wrong:{actor}"
        wrong = await self.store.counters.peek(key, WRONG_WINDOW)
        if wrong.count >= WRONG_CODES:
            until = wrong.started_at + WRONG_WINDOW
            raise TooManyAttempts(
                f"{wrong.count} wrong pairing codes from {actor} within "
                f"{int(WRONG_WINDOW.total_seconds() // 60)} minutes; try again after "
                f"{until.strftime('%H:%M:%S')} UTC")
        code = normalize_code(text)
        record = await self.store.pairings.pending(code) if code else None
        if record is None:
            count = await self.store.counters.hit(key, WRONG_WINDOW)
            await self.store.pairings.wrong_code(text, actor, count.count)
            shown = text[:16]
            raise NoSuchPairing(f"no pending pairing has the code {shown!r} (codes are 8 "
                                "letters and digits; `switchboard pairing list` shows them)")
        _in_scope(record.account, actor, accounts)
        if record.status == "expired":
            expired = record.expires_at.strftime("%Y-%m-%d %H:%M UTC") \
                if record.expires_at else "?"
            raise ActionRefused(f"pairing code {code} expired at {expired}; the sender gets a "
                                "new code with their next message")
        decided = await self.store.pairings.decide(record, status, actor)
        if decided is None:
            raise ActionRefused(f"pairing code {code} was decided meanwhile")
        return decided


def _in_scope(account: str, actor: str, accounts: Collection[str] | None) -> None:
    if accounts is not None and account not in accounts:
        raise OutOfScope(f"operator {actor} is limited to some agents; account {account} "
                         "also answers others, so its pairings are not theirs")
