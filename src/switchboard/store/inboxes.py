"""Inbox addresses of agents, and the Message-IDs that tie an email thread to its root."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from channels.messages import SwitchboardError
from switchboard.models import EmailThread, InboxAddress
from switchboard.store.accounts import AccountQueries
from switchboard.store.base import iso


class AddressTaken(SwitchboardError):
    """The address is already provisioned (possibly for another agent, possibly revoked)."""


def inbox_dict(row: InboxAddress) -> dict[str, Any]:
    """An inbox as the API and `--json` show it."""
    return {"email_address": row.address, "agent": row.agent, "account": row.account,
            "created_at": iso(row.created_at), "revoked_at": iso(row.revoked_at),
            "active": row.revoked_at is None}


class InboxQueries(AccountQueries):
    async def provision_inbox(self, address: str, agent: str, account: str, *,
                              revive: bool = False) -> InboxAddress:
        """Store a new address for `agent`. With `revive`, a revoked address of the same agent
        and account is brought back. Raises AddressTaken when the address is in use (revoked
        addresses stay taken, so mail meant for an old owner never reaches a new one)."""
        address = address.lower()
        async with self.tx() as db:
            existing = await db.get(InboxAddress, address)
            if existing is not None:
                if (not revive or existing.revoked_at is None or existing.agent != agent
                        or existing.account != account):
                    raise AddressTaken(address)
                existing.revoked_at = None
                db.add(existing)
                return existing
        row = InboxAddress(address=address, agent=agent, account=account,
                           created_at=self.clock.now())
        try:
            async with self.tx() as db:
                db.add(row)
        except IntegrityError:  # another process provisioned it a moment ago
            raise AddressTaken(address) from None
        return row

    async def list_inboxes(self, include_revoked: bool = True) -> list[InboxAddress]:
        query = select(InboxAddress).order_by(col(InboxAddress.created_at),
                                              col(InboxAddress.address))
        if not include_revoked:
            query = query.where(col(InboxAddress.revoked_at).is_(None))
        async with self.tx() as db:
            return list((await db.exec(query)).all())

    async def revoke_inbox(self, address: str) -> InboxAddress | None:
        """Mark the address revoked (mail to it is refused from now on); None if unknown.
        Revoking twice keeps the first time."""
        address = address.lower()
        async with self.tx() as db:
            await db.exec(update(InboxAddress).where(
                InboxAddress.address == address, col(InboxAddress.revoked_at).is_(None),
            ).values(revoked_at=self.clock.now()))
        async with self.tx() as db:
            return await db.get(InboxAddress, address)

    async def active_inbox(self, address: str, accounts: Iterable[str]) -> InboxAddress | None:
        """The live (not revoked) inbox at `address` on one of `accounts`, or None."""
        async with self.tx() as db:
            return (await db.exec(select(InboxAddress).where(
                InboxAddress.address == address.lower(),
                col(InboxAddress.account).in_(list(accounts)),
                col(InboxAddress.revoked_at).is_(None),
            ))).first()

    async def all_inbox_addresses(self) -> set[str]:
        """Every address we ever provisioned: mail from any of them is our own."""
        async with self.tx() as db:
            return set((await db.exec(select(InboxAddress.address))).all())

    async def thread_root(self, account: str, message_ids: Iterable[str]) -> str | None:
        """The root of the first of `message_ids` (in the order given) that we know."""
        ids = [m for m in dict.fromkeys(message_ids) if m]
        if not ids:
            return None
        async with self.tx() as db:
            rows = (await db.exec(select(EmailThread).where(
                EmailThread.account == account, col(EmailThread.message_id).in_(ids),
            ))).all()
        roots = {row.message_id: row.root for row in rows}
        return next((roots[m] for m in ids if m in roots), None)

    async def remember_thread(self, account: str, message_id: str, root: str) -> None:
        """Map a Message-ID (received or sent) to its thread's root; the first mapping stays."""
        if not message_id:
            return
        stmt = self._insert(EmailThread).values(account=account, message_id=message_id,
                                                root=root, created_at=self.clock.now())
        async with self.tx() as db:
            await db.exec(stmt.on_conflict_do_nothing(index_elements=["account", "message_id"]))
