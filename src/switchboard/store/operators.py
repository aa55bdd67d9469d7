"""What belongs to operators: the tokens `serve` generated, and the audit log of their actions."""

from __future__ import annotations

import hashlib

from sqlmodel import col, select

from switchboard.models import AuditEntry, OperatorToken
from switchboard.store.database import Database
from switchboard.store.records import AuditRecord, GeneratedToken, load


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """`store.tokens`: operator tokens generated on first start (only their hashes)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def generated(self) -> list[GeneratedToken]:
        async with self.db.tx() as db:
            return [load(GeneratedToken, row)
                    for row in (await db.exec(select(OperatorToken))).all()]

    async def add(self, name: str, role: str, token: str) -> None:
        async with self.db.tx() as db:
            db.add(OperatorToken(name=name, role=role, token_hash=token_hash(token),
                                 created_at=self.db.clock.now()))


class AuditLog:
    """`store.audit`: who deleted a session or overrode its model, newest first (the entries
    are written by the actions themselves, in their transactions)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def entries(self, limit: int = 100) -> list[AuditRecord]:
        async with self.db.tx() as db:
            rows = (await db.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc())
                                  .limit(limit))).all()
            return [load(AuditRecord, row) for row in rows]
