"""What belongs to operators: those kept in the database (only the hashes of their tokens),
and the audit log of their actions."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select, update

from switchboard.errors import NoSuchOperator, OperatorExists
from switchboard.models import AuditEntry, OperatorToken
from switchboard.store.database import Database
from switchboard.store.records import AuditRecord, StoredOperator, load


def token_hash(token: str) -> str:
    """What is kept of a token. Tokens are long random strings, so one round of SHA-256 is
    enough: there is no dictionary of likely tokens to try."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """`store.tokens`: operators added by `switchboard operators add` or the API, and the admin
    `serve` generates on first start; only the hash of each token."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def all(self) -> list[StoredOperator]:
        """Every stored operator, by name."""
        async with self.db.tx() as db:
            rows = (await db.exec(select(OperatorToken)
                                  .order_by(col(OperatorToken.name)))).all()
            return [load(StoredOperator, row) for row in rows]

    async def add(self, name: str, role: str, token: str, agents: list[str] | None = None
                  ) -> StoredOperator:
        """A new operator; OperatorExists when the name is taken."""
        row = OperatorToken(name=name, role=role, token_hash=token_hash(token),
                            created_at=self.db.clock.now(), agents=agents)
        try:
            async with self.db.tx() as db:
                db.add(row)
                await db.flush()
                return load(StoredOperator, row)
        except IntegrityError:
            raise OperatorExists(f"an operator named {name!r} exists already; rotate its "
                                 "token or revoke it first") from None

    async def rotate(self, name: str, token: str) -> None:
        """Give the operator a new token; the old one stops working."""
        async with self.db.tx() as db:
            changed = await db.exec(update(OperatorToken)  # type: ignore[call-overload]
                                    .where(col(OperatorToken.name) == name)
                                    .values(token_hash=token_hash(token),
                                            rotated_at=self.db.clock.now()))
            if not changed.rowcount:
                raise NoSuchOperator(f"no stored operator named {name!r}")

    async def revoke(self, name: str) -> None:
        """Remove the operator; its token stops working."""
        async with self.db.tx() as db:
            removed = await db.exec(delete(OperatorToken)  # type: ignore[call-overload]
                                    .where(col(OperatorToken.name) == name))
            if not removed.rowcount:
                raise NoSuchOperator(f"no stored operator named {name!r}")


class AuditLog:
    """`store.audit`: what operators did, newest first. Deletes and model overrides write
    their entries in their own transactions; other actions through `record`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, actor: str, action: str, target: str,
                     detail: dict[str, Any] | None = None) -> None:
        async with self.db.tx() as db:
            db.add(AuditEntry(at=self.db.clock.now(), actor=actor, action=action,
                              target=target, detail=detail or {}))

    async def entries(self, limit: int = 100) -> list[AuditRecord]:
        async with self.db.tx() as db:
            rows = (await db.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc())
                                  .limit(limit))).all()
            return [load(AuditRecord, row) for row in rows]
