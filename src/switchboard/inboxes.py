"""Inbox addresses: provisioning one for an agent on an email account's domain, over the CLI
and the operator API (`POST /api/agents/{agent}/inbox`, `GET /api/inboxes`, revoke)."""


import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from pydantic import BaseModel, ConfigDict

from inbox.settings import EmailSettings
from sessions.events import EventHub
from switchboard.config import Config
from switchboard.current_config import CurrentConfig
from switchboard.errors import AddressTaken, InboxRefused, NoSuchAgent, NoSuchInbox
from switchboard.operators import Operator
from switchboard.store import Inbox, Store
from switchboard.views import inbox_json

_LOCAL_PART = re.compile(r"^[a-z0-9._+-]{1,64}$")


def check_local_part(local_part: str) -> str:
    """The local part lowercased, or InboxRefused saying what is wrong with it."""
    value = local_part.strip().lower()
    if (not _LOCAL_PART.match(value) or value.startswith(".") or value.endswith(".")
            or ".." in value):
        raise InboxRefused(f"{local_part!r} is not a usable local part: use 1 to 64 of a-z, "
                           "0-9, '.', '_', '+' and '-', with no leading, trailing or double dot")
    return value


def default_local_part(agent: str) -> str:
    """The agent's name made fit for an address: `Help Desk` becomes `help-desk`."""
    value = re.sub(r"[^a-z0-9._+-]+", "-", agent.lower())
    value = re.sub(r"\.{2,}", ".", value).strip(".-")[:60].strip(".-")
    return value or "agent"


async def provision(store: Store, config: Config, agent: str, account: str | None = None,
                    local_part: str | None = None) -> Inbox:
    """A new inbox address for `agent` on an email account's domain.

    Without `account`, the only email account; without `local_part`, the agent's name, or
    `name-2`, `name-3`, … when that is taken. Naming a revoked address of the same agent
    brings it back. Raises NoSuchAgent, or InboxRefused (AddressTaken) saying why not.
    """
    if agent not in config.agents:
        raise NoSuchAgent(f"no agent named {agent!r}; agents are: "
                          f"{', '.join(config.agents) or 'none'}")
    choices = {n: s for n, s in config.accounts.items() if isinstance(s, EmailSettings)}
    if account is None:
        if not choices:
            raise InboxRefused("no email account is configured; add one with provider: email")
        if len(choices) > 1:
            raise InboxRefused(f"there are several email accounts ({', '.join(choices)}); "
                               "choose one with account")
        account = next(iter(choices))
    if account not in choices:
        raise InboxRefused(f"no email account named {account!r}; email accounts are: "
                           f"{', '.join(choices) or 'none'}")
    domain = choices[account].mail_domain.strip().lower()  # a mailbox: its address's domain
    if not domain:
        raise InboxRefused(f"email account {account} has no domain; set accounts.{account}.domain")
    if local_part is not None:
        address = f"{check_local_part(local_part)}@{domain}"
        try:
            return await store.inboxes.provision(address, agent, account, revive=True)
        except AddressTaken:
            raise AddressTaken(f"{address} is already provisioned (or was revoked from "
                               "another agent); choose another local part") from None
    base = default_local_part(agent)
    for number in range(1, 1000):
        candidate = base if number == 1 else f"{base}-{number}"
        try:
            return await store.inboxes.provision(f"{candidate}@{domain}", agent, account)
        except AddressTaken:
            continue
    raise AddressTaken(f"every {base}-N address on {domain} is taken; give a local part")


class InboxBody(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown field is refused, not dropped
    account: str | None = None
    local_part: str | None = None


def inbox_routes(store: Store, config: CurrentConfig, events: EventHub,
                 needs: Callable[[str], Callable[..., Any]]) -> APIRouter:
    """`POST /api/agents/{agent}/inbox`, `GET /api/inboxes`, `DELETE /api/inboxes/{address}`;
    `needs(role)` admits operators (`operators.operator_auth`)."""
    router = APIRouter(prefix="/api", tags=["inboxes"])
    acting = Depends(needs("operator"))

    @router.post("/agents/{agent}/inbox", status_code=201)
    async def provision_inbox(agent: str, who: Annotated[Operator, acting],
                              body: Annotated[InboxBody | None, Body()] = None
                              ) -> dict[str, Any]:
        body = body or InboxBody()
        who.check(agent, f"agent {agent}")
        inbox = await provision(store, config(), agent, body.account, body.local_part)
        events.publish("inbox.provisioned", {"email_address": inbox.address,
                                             "agent": agent, "account": inbox.account})
        return inbox_json(inbox)

    @router.get("/inboxes")
    async def list_inboxes(who: Annotated[Operator, Depends(needs("viewer"))]
                           ) -> dict[str, Any]:
        return {"inboxes": [inbox_json(inbox) for inbox in await store.inboxes.all()
                            if who.sees(inbox.agent)]}

    @router.delete("/inboxes/{address}")
    async def revoke_inbox(address: str, who: Annotated[Operator, acting]) -> dict[str, Any]:
        known = await store.inboxes.get(address)
        if known is None:
            raise NoSuchInbox(f"no inbox {address}")
        who.check(known.agent, f"inbox {address}")
        inbox = await store.inboxes.revoke(address)
        assert inbox is not None  # addresses are never removed
        events.publish("inbox.revoked", {"email_address": inbox.address,
                                          "agent": inbox.agent, "account": inbox.account})
        return inbox_json(inbox)

    return router


__all__ = ["check_local_part", "default_local_part", "inbox_routes", "provision"]
