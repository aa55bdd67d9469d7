"""Operators: who may use the API (Bearer tokens from `operators` in the config, and those kept
in the database), the agents each may see, and the FastAPI dependency that admits them."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Header, HTTPException, Request

from switchboard.config import Config
from switchboard.errors import OperatorRefused, OutOfScope
from switchboard.store import Store, iso, token_hash

ROLES = ("viewer", "operator", "admin")
OPERATOR_KEY = "switchboard.operator"  # where the admitted operator is kept in the ASGI scope
AUDIT_TARGET = "switchboard.audit_target"  # what a route acted on, when not in its path
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    agents: frozenset[str] | None = None  # None: every agent

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def sees(self, agent: str | None) -> bool:
        """Whether this operator may see and act on what belongs to `agent` (a turn no agent
        answered belongs to none: only operators of every agent see it)."""
        return self.agents is None or agent in self.agents

    def check(self, agent: str | None, what: str) -> None:
        """OutOfScope unless `agent` is one of this operator's."""
        if not self.sees(agent):
            raise OutOfScope(f"operator {self.name} is limited to the agents "
                             f"{', '.join(sorted(self.agents or ()))}; {what} is not theirs")


def new_token() -> str:
    """A new operator token: 192 random bits, recognisable by its prefix."""
    return "sb_" + secrets.token_urlsafe(24)


def checked_operator(name: str, role: str, agents: Iterable[str] | None,
                     known_agents: Iterable[str]) -> list[str] | None:
    """OperatorRefused unless the name, role and agents make an operator; the agents as kept."""
    if not _NAME.match(name):
        raise OperatorRefused(f"{name!r} is not a usable operator name: 1 to 64 of letters, "
                              "digits, '.', '_' and '-', starting with a letter or digit")
    if role not in ROLES:
        raise OperatorRefused(f"unknown role {role!r}; roles are: {', '.join(ROLES)}")
    if agents is None:
        return None
    chosen = sorted({a.strip() for a in agents if a.strip()})
    if not chosen:
        raise OperatorRefused("agents: name at least one agent (or leave it out for all)")
    if role == "admin":
        raise OperatorRefused("an admin sees every agent; limit an operator or a viewer to "
                              "agents instead")
    known = set(known_agents)
    unknown = [a for a in chosen if a not in known]
    if unknown:
        raise OperatorRefused(f"unknown agent {unknown[0]!r}; agents are: "
                              f"{', '.join(sorted(known)) or 'none'}")
    return chosen


class Operators:
    """Operator tokens by hash: the config's, and those kept in the database, read again every
    `refresh` seconds so an operator added, rotated or revoked elsewhere (the CLI, another
    `serve`) counts here within that time, without a database query per request."""

    def __init__(self, store: Store, refresh: float = 1.0) -> None:
        self.store = store
        self.refresh = refresh
        self._configured: dict[str, Operator] = {}
        self._stored: dict[str, Operator] = {}
        self.configured_names: frozenset[str] = frozenset()

    async def load(self, config: Config) -> None:
        """The config's tokens (replacing those of an earlier config: a reload) and the stored
        ones. With none at all, `serve` makes the first admin's once it is serving:
        `first_admin`."""
        configured = {}
        for op in config.operators:
            if op.token:
                agents = frozenset(op.agents) if op.agents is not None else None
                configured[token_hash(op.token)] = Operator(op.name, op.role, agents)
        self._configured = configured
        self.configured_names = frozenset(op.name for op in config.operators)
        await self.reload()

    async def first_admin(self) -> str | None:
        """With no operator at all, a new admin token, kept in the database (only its hash),
        so the API is never open by accident; None when there are operators. `serve` calls it
        once it is serving, so a start that fails (a port in use) makes none."""
        if self._configured or self._stored:
            return None
        await self.reload()  # another process made one meanwhile
        if self._stored:
            return None
        token = new_token()
        await self.store.tokens.add("admin", "admin", token)
        await self.reload()
        return token

    async def reload(self) -> None:
        """Read the stored operators again (at once after a change made in this process)."""
        self._stored = {row.token_hash: Operator(row.name, row.role,
                                                 frozenset(row.agents)
                                                 if row.agents is not None else None)
                        for row in await self.store.tokens.all()}

    async def follow(self) -> None:
        """Reload every `refresh` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.reload()
            except Exception:  # the last known operators stay; the next round tries again
                log.exception("reading the stored operators failed")

    def __call__(self, token: str) -> Operator | None:
        """The operator this token belongs to, or None. Looked up by the token's hash, so
        the time a lookup takes says nothing about the token itself."""
        if not token:
            return None
        digest = token_hash(token)
        return self._configured.get(digest) or self._stored.get(digest)


Needs = Callable[[str], Callable[..., Any]]
"""`needs(role)`: the FastAPI dependency admitting operators with at least that role."""


def operator_auth(lookup: Callable[[str], Operator | None]
                  ) -> Callable[[str], Callable[..., Any]]:
    """A dependency factory: `needs("operator")` admits operators and admins. The operator
    admitted is kept in the request's scope, for the audit log (`switchboard.audit`)."""

    def needs(role: str) -> Callable[..., Any]:
        async def check(request: Request,
                        authorization: Annotated[str | None, Header()] = None) -> Operator:
            scheme, _, token = (authorization or "").partition(" ")
            operator = lookup(token.strip()) if scheme.lower() == "bearer" else None
            if operator is None:
                raise HTTPException(401, "a valid operator token is required: "
                                    "Authorization: Bearer <token>",
                                    headers={"WWW-Authenticate": "Bearer"})
            if not operator.may(role):
                raise HTTPException(403, f"operator {operator.name} is a {operator.role}; "
                                    f"this needs the {role} role")
            request.scope[OPERATOR_KEY] = operator
            return operator

        return check

    return needs


def operator_rows(stored: Iterable[Any], configured: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every operator as the API and `operators list` show it (never a token or its hash)."""
    rows = [{"name": name, "role": op.role, "agents": op.agents, "source": "config",
             "created_at": None, "rotated_at": None} for name, op in configured.items()]
    rows += [{"name": row.name, "role": row.role, "agents": row.agents, "source": "database",
              "created_at": iso(row.created_at), "rotated_at": iso(row.rotated_at)}
             for row in stored]
    return sorted(rows, key=lambda r: r["name"])


__all__ = ["AUDIT_TARGET", "OPERATOR_KEY", "ROLES", "Operator", "Operators", "checked_operator",
           "new_token", "operator_auth", "operator_rows"]
