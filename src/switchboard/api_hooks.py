"""The operator API of outbound webhooks: every delivery, its attempts and the receivers'
answers (`GET /api/webhooks/deliveries`), and redelivery. docs/outbound-webhooks.md."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from switchboard.errors import NotFound, OutOfScope
from switchboard.hooks import EVENTS, shown_url
from switchboard.operators import Needs, Operator
from switchboard.store import HookRecord, Store, iso

STATE_PATTERN = "^(pending|retrying|delivered|dead)$"


def delivery_json(record: HookRecord) -> dict[str, Any]:
    return {"id": record.id, "event": record.event, "url": shown_url(record.url),
            "state": record.state, "attempt_count": record.attempts,
            "created_at": iso(record.created_at),
            "next_attempt_at": iso(record.next_attempt_at)
            if record.state in ("pending", "retrying") else None,
            "delivered_at": iso(record.delivered_at), "data": record.data,
            "attempts": [{"at": iso(a.at), "status": a.status, "body": a.body,
                          "error": a.error, "ms": a.ms} for a in record.tries]}


def hook_routes(store: Store, needs: Needs) -> APIRouter:
    Viewer = Annotated[Operator, Depends(needs("viewer"))]
    Redeliverer = Annotated[Operator, Depends(needs("operator"))]
    router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])

    def unlimited(who: Operator) -> None:
        # Deliveries carry every agent's events: an operator limited to some agents sees none.
        if who.agents is not None:
            raise OutOfScope(f"operator {who.name} is limited to some agents; webhook "
                             "deliveries carry every agent's events")

    @router.get("/deliveries")
    async def list_deliveries(
        who: Viewer,
        event: Annotated[str | None, Query(pattern="^(" + "|".join(
            e.replace(".", r"\.") for e in EVENTS) + ")$")] = None,
        state: Annotated[str | None, Query(pattern=STATE_PATTERN)] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        unlimited(who)
        rows, next_cursor = await store.hooks.page({"event": event, "state": state}, cursor,
                                                   limit)
        return {"deliveries": [delivery_json(r) for r in rows], "next_cursor": next_cursor}

    @router.get("/deliveries/{delivery_id}")
    async def get_delivery(delivery_id: str, who: Viewer) -> dict[str, Any]:
        unlimited(who)
        record = await store.hooks.get(delivery_id)
        if record is None:
            raise NotFound(f"no webhook delivery {delivery_id}")
        return delivery_json(record)

    @router.post("/deliveries/{delivery_id}/redeliver")
    async def redeliver(delivery_id: str, who: Redeliverer) -> dict[str, Any]:
        unlimited(who)
        record = await store.hooks.redeliver(delivery_id)
        if record is None:
            raise NotFound(f"no webhook delivery {delivery_id}")
        return delivery_json(record)

    return router


__all__ = ["delivery_json", "hook_routes"]
