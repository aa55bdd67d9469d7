"""`/api/pairing`: the codes strangers were given (viewer), approve or deny one, revoke a
sender (operator)."""


from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from switchboard.operators import Operator
from switchboard.pairing import Pairings
from switchboard.store import PairingRecord, iso


def pairing_json(record: PairingRecord) -> dict[str, Any]:
    return {"account": record.account, "sender": record.sender,
            "sender_name": record.sender_name, "status": record.status, "code": record.code,
            "created_at": iso(record.created_at), "expires_at": iso(record.expires_at),
            "decided_at": iso(record.decided_at), "decided_by": record.decided_by,
            "turn_id": record.turn_id}


def pairing_routes(pairings: Pairings, needs: Callable[[str], Callable[..., Any]]
                   ) -> APIRouter:
    router = APIRouter(prefix="/api/pairing", tags=["operators"])
    viewer, operator = needs("viewer"), needs("operator")

    @router.get("", dependencies=[Depends(viewer)])
    async def list_pairings() -> dict[str, Any]:
        return {"pairings": [pairing_json(p) for p in await pairings.listing()]}

    @router.post("/{code}/approve")
    async def approve(code: str, who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return pairing_json(await pairings.approve(code, who.name))

    @router.post("/{code}/deny")
    async def deny(code: str, who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        return pairing_json(await pairings.deny(code, who.name))

    @router.delete("/{account}/{sender}")
    async def revoke(account: str, sender: str,
                     who: Annotated[Operator, Depends(operator)]) -> dict[str, Any]:
        await pairings.revoke(account, sender, who.name)
        return {"revoked": True, "account": account, "sender": sender}

    return router
