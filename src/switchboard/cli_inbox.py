"""`switchboard inbox provision|list|revoke`: agents' email addresses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from switchboard.cli_common import (
    ConfigOption,
    JsonOption,
    console,
    err,
    group,
    load,
    print_json,
    print_table,
    table,
    target,
    when,
    with_store,
)

if TYPE_CHECKING:
    from switchboard.store import Inbox, Store

inbox_app = group("Email inboxes of agents.")


@inbox_app.command("provision")
def inbox_provision(
    agent: Annotated[str, typer.Argument(help="An agent of the config")],
    account: Annotated[str | None, typer.Option(
        help="Email account (default: the only one)")] = None,
    local_part: Annotated[str | None, typer.Option(
        "--local-part", help="The part before @ (default: the agent's name)")] = None,
    new: Annotated[bool, typer.Option(
        "--new", help="Another address even when the agent has one already")] = False,
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give an agent an email address on an email account's domain; prints the address."""
    from switchboard.errors import InboxRefused, NoSuchAgent
    from switchboard.inboxes import provision
    from switchboard.views import inbox_json

    where = target(config)
    settings = where.config or load(config or "bindings.yaml")

    async def work(store: Store) -> tuple[Inbox, bool]:
        if local_part is None and not new:
            for inbox in await store.inboxes.all(include_revoked=False):
                if inbox.agent == agent and account in (None, inbox.account):
                    return inbox, False
        return await provision(store, settings, agent, account, local_part), True

    try:
        inbox, made = with_store(where, work)
    except (InboxRefused, NoSuchAgent) as error:
        err.print(str(error), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print_json({**inbox_json(inbox), "created": made})
        return
    if not made:
        console.print(f"{agent} already has {inbox.address} (--new makes another)",
                      highlight=False, soft_wrap=True)
        return
    console.print(inbox.address, highlight=False, soft_wrap=True)


@inbox_app.command("list")
def inbox_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Every provisioned address, revoked ones included."""
    from switchboard.views import inbox_json

    where = target(config)
    inboxes = [inbox_json(inbox) for inbox in with_store(where, lambda s: s.inboxes.all())]
    if as_json:
        print_json({"inboxes": inboxes})
        return
    rows = table("address", "agent", "account", "created", "revoked", id_width=0,
                 whole=("created", "revoked"))
    for i in inboxes:
        rows.add_row(i["email_address"], i["agent"], i["account"], when(i["created_at"]),
                     when(i["revoked_at"]))
    print_table(rows, f"no inboxes in {where.where}")


@inbox_app.command("revoke")
def inbox_revoke(address: Annotated[str, typer.Argument(help="The address to refuse")],
                 config: ConfigOption = None) -> None:
    """Refuse mail to the address from now on (it is never handed to anyone else)."""
    inbox = with_store(target(config), lambda s: s.inboxes.revoke(address))
    if inbox is None:
        err.print(f"no inbox {address}", highlight=False)
        raise typer.Exit(1)
    console.print(f"{inbox.address} is revoked; mail to it is refused with 550", highlight=False)


__all__ = ["inbox_app"]
