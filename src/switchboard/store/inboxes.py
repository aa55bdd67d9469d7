"""Inbox addresses of agents, and the Message-IDs that tie an email thread to its root."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from switchboard.errors import AddressTaken
from switchboard.models import EmailThread, InboxAddress
from switchboard.store.database import Database
from switchboard.store.records import Inbox, load


class InboxStore:
    """`store.inboxes`: provisioned addresses (live or revoked) and email thread roots."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock

    async def provision(self, address: str, agent: str, account: str, *,
                        revive: bool = False) -> Inbox:
        """Store a new address for `agent`. With `revive`, a revoked address of the same agent
        and account is brought back. Raises AddressTaken when the address is in use (revoked
        addresses stay taken, so mail meant for an old owner never reaches a new one)."""
        address = address.lower()
        taken = AddressTaken(f"{address} is already provisioned")
        async with self.db.tx() as db:
            existing = await db.get(InboxAddress, address)
            if existing is not None:
                if (not revive or existing.revoked_at is None or existing.agent != agent
                        or existing.account != account):
                    raise taken
                existing.revoked_at = None
                db.add(existing)
                return load(Inbox, existing)
        row = InboxAddress(address=address, agent=agent, account=account,
                           created_at=self.clock.now())
        try:
            async with self.db.tx() as db:
                db.add(row)
        except IntegrityError:  # another process provisioned it a moment ago
            raise taken from None
        return load(Inbox, row)

    async def all(self, include_revoked: bool = True) -> list[Inbox]:
        query = select(InboxAddress).order_by(col(InboxAddress.created_at),
                                              col(InboxAddress.address))
        if not include_revoked:
            query = query.where(col(InboxAddress.revoked_at).is_(None))
        async with self.db.tx() as db:
            return [load(Inbox, row) for row in (await db.exec(query)).all()]

    async def get(self, address: str) -> Inbox | None:
        async with self.db.tx() as db:
            row = await db.get(InboxAddress, address.lower())
            return load(Inbox, row) if row is not None else None

    async def revoke(self, address: str) -> Inbox | None:
        """Mark the address revoked (mail to it is refused from now on); None if unknown.
        Revoking twice keeps the first time."""
        address = address.lower()
        async with self.db.tx() as db:
            await db.exec(update(InboxAddress).where(
                col(InboxAddress.address) == address, col(InboxAddress.revoked_at).is_(None),
            ).values(revoked_at=self.clock.now()))
        return await self.get(address)

    async def active(self, address: str, accounts: Iterable[str]) -> Inbox | None:
        """The live (not revoked) inbox at `address` on one of `accounts`, or None."""
        async with self.db.tx() as db:
            row = (await db.exec(select(InboxAddress).where(
                InboxAddress.address == address.lower(),
                col(InboxAddress.account).in_(list(accounts)),
                col(InboxAddress.revoked_at).is_(None),
            ))).first()
            return load(Inbox, row) if row is not None else None

    async def all_addresses(self) -> set[str]:
        """Every address we ever provisioned: mail from any of them is our own."""
        async with self.db.tx() as db:
            return set((await db.exec(select(InboxAddress.address))).all())

    async def thread_root(self, account: str, message_ids: Iterable[str]) -> str | None:
        """The root of the first of `message_ids` (in the order given) that we know."""
        ids = [m for m in dict.fromkeys(message_ids) if m]
        if not ids:
            return None
        async with self.db.tx() as db:
            rows = (await db.exec(select(EmailThread).where(
                EmailThread.account == account, col(EmailThread.message_id).in_(ids),
            ))).all()
        roots = {row.message_id: row.root for row in rows}
        return next((roots[m] for m in ids if m in roots), None)

    async def remember_thread(self, account: str, message_id: str, root: str) -> None:
        """Map a Message-ID (received or sent) to its thread's root; the first mapping stays."""
        if not message_id:
            return
        stmt = self.db.insert(EmailThread).values(account=account, message_id=message_id,
                                                  root=root, created_at=self.clock.now())
        async with self.db.tx() as db:
            await db.exec(stmt.on_conflict_do_nothing(index_elements=["account", "message_id"]))
