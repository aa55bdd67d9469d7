"""`switchboard pairing list|approve CODE|deny CODE|revoke ACCOUNT SENDER`: the operators'
side of `dm_policy: pairing`, against the configured database. "You are in" is left in the
outbox; a running `serve` delivers it within its sweep interval."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from switchboard import db
from switchboard.cli_common import print_table, table, when
from switchboard.errors import SwitchboardError

T = TypeVar("T")
pairing_app = typer.Typer(help="Pair strangers with an account (dm_policy: pairing).",
                          no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _run(work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(pairings)` on the configured database; a refusal is printed, exit 1."""
    from switchboard.clock import Clock
    from switchboard.pairing import Pairings
    from switchboard.store import Store, create_engine

    db.upgrade()

    async def run() -> T:
        engine = create_engine()
        store = Store(engine, Clock())
        try:
            return await work(Pairings(store))
        finally:
            store.close()
            await engine.dispose()

    try:
        return asyncio.run(run())
    except SwitchboardError as error:
        err.print(str(error), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@pairing_app.command("list")
def pairing_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Pending codes (and expired ones), senders told to wait, approved and denied senders."""
    from switchboard.api_pairing import pairing_json

    rows = [pairing_json(p) for p in _run(lambda pairings: pairings.listing())]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    listed = table("code", "status", "account", "sender", "name", "expires / decided",
                   id_width=8, whole=("status",))
    for row in rows:
        at = when(row["expires_at"]) if row["status"] in ("pending", "expired") else \
            " ".join(filter(None, [when(row["decided_at"]), row["decided_by"]]))
        listed.add_row(row["code"] or "-", row["status"], row["account"], row["sender"],
                       row["sender_name"], at)
    print_table(listed, "no pairing codes or paired senders")


@pairing_app.command("approve")
def pairing_approve(code: str) -> None:
    """Let the sender with this code talk to the account's agents (any case)."""
    record = _run(lambda pairings: pairings.approve(code, _actor()))
    out.print(f"approved {record.sender} on {record.account}; they are told they are in",
              highlight=False)


@pairing_app.command("deny")
def pairing_deny(code: str) -> None:
    """Refuse the sender with this code; they pair again only after `revoke`."""
    record = _run(lambda pairings: pairings.deny(code, _actor()))
    out.print(f"denied {record.sender} on {record.account}", highlight=False)


@pairing_app.command("revoke")
def pairing_revoke(account: str, sender: str) -> None:
    """Forget a sender's pairing (approved or denied): their next DM starts a new one."""
    _run(lambda pairings: pairings.revoke(account, sender, _actor()))
    out.print(f"revoked {sender} on {account}", highlight=False)
