"""`/api/operators`: admins list, add, rotate and revoke the operators kept in the database.
A new or rotated token is in the answer once; only its hash is kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from switchboard.current_config import CurrentConfig
from switchboard.errors import OperatorRefused
from switchboard.operators import (
    AUDIT_TARGET,
    Operators,
    checked_operator,
    new_token,
    operator_rows,
)
from switchboard.store import Store


class OperatorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped

    name: str
    role: str
    agents: list[str] | None = None


def operator_routes(store: Store, operators: Operators, config: CurrentConfig,
                    needs: Callable[[str], Callable[..., Any]]) -> APIRouter:
    """The routes, for admins only; the config's operators are listed, never changed here, and
    its agents are the names an operator may be limited to (both read at each request)."""
    router = APIRouter(prefix="/api", tags=["operators"],
                       dependencies=[Depends(needs("admin"))])
    def in_config() -> dict[str, Any]:
        return {op.name: op for op in config().operators}

    def stored_only(name: str) -> None:
        if name in in_config():
            raise OperatorRefused(f"operator {name} is defined in the config; change or "
                                  "remove it there")

    @router.get("/operators")
    async def list_operators() -> dict[str, Any]:
        return {"operators": operator_rows(await store.tokens.all(), in_config())}

    @router.post("/operators", status_code=201)
    async def add_operator(body: OperatorBody, request: Request) -> dict[str, Any]:
        request.scope[AUDIT_TARGET] = body.name
        stored_only(body.name)
        limited = checked_operator(body.name, body.role, body.agents, config().agents)
        token = new_token()
        await store.tokens.add(body.name, body.role, token, limited)
        await operators.reload()
        return {"name": body.name, "role": body.role, "agents": limited, "token": token}

    @router.post("/operators/{name}/rotate")
    async def rotate_operator(name: str) -> dict[str, Any]:
        stored_only(name)
        token = new_token()
        await store.tokens.rotate(name, token)
        await operators.reload()
        return {"name": name, "token": token}

    @router.delete("/operators/{name}")
    async def revoke_operator(name: str) -> dict[str, Any]:
        stored_only(name)
        await store.tokens.revoke(name)
        await operators.reload()
        return {"ok": True, "message": f"operator {name} is revoked; its token no longer works"}

    return router


__all__ = ["operator_routes"]
