"""Operators: who may use the API (Bearer tokens from `operators`, or the generated admin's),
and the FastAPI dependency that admits them by role."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, HTTPException

from switchboard.config import Config
from switchboard.store import Store, token_hash

ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class Operator:
    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Operators:
    """Operator tokens by hash: the config's and the generated ones kept in the database."""

    def __init__(self) -> None:
        self._by_hash: dict[str, Operator] = {}

    async def load(self, config: Config, store: Store) -> None:
        """The config's tokens and the stored ones (`serve` makes the first admin's, once it
        is serving: `first_admin`)."""
        for op in config.operators:
            if op.token:
                self._by_hash[token_hash(op.token)] = Operator(op.name, op.role)
        for row in await store.tokens.generated():
            self._by_hash[row.token_hash] = Operator(row.name, row.role)

    async def first_admin(self, store: Store) -> str | None:
        """With no operator at all, a new admin token (only its hash is kept), so the API is
        never open by accident; None when there are operators. `serve` calls it once it is
        serving, so a start that fails (a port in use) makes none."""
        if self._by_hash:
            return None
        for row in await store.tokens.generated():  # another process made one meanwhile
            self._by_hash[row.token_hash] = Operator(row.name, row.role)
        if self._by_hash:
            return None
        token = "sb_" + secrets.token_urlsafe(24)
        await store.tokens.add("admin", "admin", token)
        self._by_hash[token_hash(token)] = Operator("admin", "admin")
        return token

    def __call__(self, token: str) -> Operator | None:
        """The operator this token belongs to, or None."""
        return self._by_hash.get(token_hash(token))


def operator_auth(lookup: Callable[[str], Operator | None]
                  ) -> Callable[[str], Callable[..., Any]]:
    """A dependency factory: `needs("operator")` admits operators and admins."""

    def needs(role: str) -> Callable[..., Any]:
        async def check(authorization: Annotated[str | None, Header()] = None) -> Operator:
            scheme, _, token = (authorization or "").partition(" ")
            operator = lookup(token.strip()) if scheme.lower() == "bearer" else None
            if operator is None:
                raise HTTPException(401, "a valid operator token is required: "
                                    "Authorization: Bearer <token>",
                                    headers={"WWW-Authenticate": "Bearer"})
            if not operator.may(role):
                raise HTTPException(403, f"operator {operator.name} is a {operator.role}; "
                                    f"this needs the {role} role")
            return operator

        return check

    return needs


__all__ = ["ROLES", "Operator", "Operators", "operator_auth"]
