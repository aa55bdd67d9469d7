"""`/api/pairing`: the codes strangers were given (viewer), approve or deny one, revoke a
sender (operator)."""


from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from channels.rules import Binding
from switchboard.current_config import CurrentConfig
from switchboard.operators import Operator
from switchboard.pairing import Pairings
from switchboard.store import PairingRecord, iso


def pairing_json(record: PairingRecord) -> dict[str, Any]:
    return {"account": record.account, "sender": record.sender,
            "sender_name": record.sender_name, "status": record.status, "code": record.code,
            "created_at": iso(record.created_at), "expires_at": iso(record.expires_at),
            "decided_at": iso(record.decided_at), "decided_by": record.decided_by,
            "turn_id": record.turn_id}


def scoped_accounts(bindings: Iterable[Binding]) -> Callable[[Operator], frozenset[str] | None]:
    """The accounts an operator may decide pairings for: all (None) for an operator of every
    agent; for one limited to some agents, the accounts whose every binding is theirs (an
    approval lets the sender reach every agent of the account)."""
    agents_of: dict[str, set[str]] = defaultdict(set)
    for binding in bindings:
        agents_of[binding.account].add(binding.agent)

    def accounts(who: Operator) -> frozenset[str] | None:
        if who.agents is None:
            return None
        return frozenset(a for a, agents in agents_of.items() if agents <= who.agents)

    return accounts


def pairing_routes(pairings: Pairings, config: CurrentConfig,
                   needs: Callable[[str], Callable[..., Any]]) -> APIRouter:
    """The routes; who may decide for which account follows the bindings in force."""
    router = APIRouter(prefix="/api/pairing", tags=["operators"])
    viewer, operator = needs("viewer"), needs("operator")

    def scope(who: Operator) -> frozenset[str] | None:
        return scoped_accounts(config().bindings)(who)

    @router.get("")
    async def list_pairings(who: Annotated[Operator, Depends(viewer)]) -> dict[str, Any]:
        return {"pairings": [pairing_json(p) for p in await pairings.listing(scope(who))]}

    @router.post("/{code}/approve")
    async def approve(code: str, who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return pairing_json(await pairings.approve(code, who.name, scope(who)))

    @router.post("/{code}/deny")
    async def deny(code: str, who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return pairing_json(await pairings.deny(code, who.name, scope(who)))

    @router.delete("/{account}/{sender}")
    async def revoke(account: str, sender: str,
                     who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        await pairings.revoke(account, sender, who.name, scope(who))
        return {"revoked": True, "account": account, "sender": sender}

    return router
