"""`switchboard operators add|list|rotate|revoke`: operators kept in the database, managed
on a machine that reaches it, with no token needed (so a lost admin token is recovered
locally). A running `serve` picks a change up within a second or so."""

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer

from switchboard.cli_common import (
    ConfigOption,
    JsonOption,
    Target,
    err,
    print_table,
    table,
    target,
    when,
    with_store,
)
from switchboard.cli_common import console as out
from switchboard.cli_common import group as command_group
from switchboard.errors import NotFound, OperatorRefused
from switchboard.operators import ROLES, checked_operator, new_token, operator_rows
from switchboard.store import Store

CLI = "cli"  # the actor the audit log names for actions from the terminal


def add_operator_commands(app: typer.Typer) -> None:
    """The `operators` group, on the database found beside `--config` as `serve` finds it
    (the config's operators and agents are read when the file is there)."""
    group = command_group("Operators and their tokens (kept in the database).")
    app.add_typer(group, name="operators")
    config_option, json_option = ConfigOption, JsonOption

    def named(config: str | None) -> str:
        return config or "the config"

    def refused(error: Exception) -> typer.Exit:
        err.print(str(error), highlight=False, soft_wrap=True)
        return typer.Exit(1)

    def show_token(name: str, token: str, what: str, as_json: bool, **more: Any) -> None:
        if as_json:
            sys.stdout.write(json.dumps({"name": name, **more, "token": token}) + "\n")
            return
        out.print(f"{what}. Its token, shown only this once (only its hash is kept):\n",
                  highlight=False, soft_wrap=True)
        out.print(f"    {token}\n", highlight=False, soft_wrap=True)

    @group.command("add")
    def add(
        name: str,
        role: Annotated[str, typer.Option(help=" | ".join(ROLES))],
        agents: Annotated[str | None, typer.Option(
            help="Limit to these agents, comma-separated (default: every agent)")] = None,
        config: config_option = None,
        as_json: json_option = False,
    ) -> None:
        """Add an operator; prints its new token once."""
        where = target(config)
        settings = where.config
        listed = agents.split(",") if agents is not None else None
        token = new_token()

        async def work(store: Store) -> list[str] | None:
            if settings is not None and name in {op.name for op in settings.operators}:
                raise OperatorRefused(f"operator {name} is defined in {named(config)}; "
                                      "change it there")
            known = settings.agents if settings is not None else (listed or [])
            limited = checked_operator(name, role, listed, known)
            await store.tokens.add(name, role, token, limited)
            await store.audit.record(CLI, "add_operator", name,
                                     {"role": role, "agents": limited})
            return limited

        try:
            limited = with_store(where, work)
        except OperatorRefused as error:
            raise refused(error) from None
        scope = f"limited to {', '.join(limited)}" if limited else "every agent"
        show_token(name, token, f"operator {name} ({role}, {scope}) is added", as_json,
                   role=role, agents=limited)

    @group.command("list")
    def list_(config: config_option = None, as_json: json_option = False) -> None:
        """Every operator, from the config and the database (never a token)."""
        where = target(config)
        settings = where.config
        configured = {op.name: op for op in settings.operators} if settings else {}
        rows = operator_rows(with_store(where, lambda store: store.tokens.all()), configured)
        if as_json:
            sys.stdout.write(json.dumps({"operators": rows}) + "\n")
            return
        listed = table("name", "role", "agents", "kept in", "created", "rotated", id_width=0,
                       whole=("role", "created", "rotated"))
        for r in rows:
            listed.add_row(r["name"], r["role"], ", ".join(r["agents"] or ["every agent"]),
                           r["source"], when(r["created_at"]), when(r["rotated_at"]))
        print_table(listed, "no operators")

    def change(name: str, config: str | None, action: str,
               work: Callable[[Store], Awaitable[None]]) -> None:
        where: Target = target(config)
        settings = where.config

        async def run(store: Store) -> None:
            if settings is not None and name in {op.name for op in settings.operators}:
                raise OperatorRefused(f"operator {name} is defined in {named(config)}; "
                                      "change it there")
            await work(store)
            await store.audit.record(CLI, action, name)

        try:
            with_store(where, run)
        except (OperatorRefused, NotFound) as error:
            raise refused(error) from None

    @group.command("rotate")
    def rotate(name: str, config: config_option = None,
               as_json: json_option = False) -> None:
        """Give an operator a new token (printed once); the old one stops working."""
        token = new_token()
        change(name, config, "rotate_operator", lambda store: store.tokens.rotate(name, token))
        show_token(name, token, f"operator {name} has a new token; the old one no longer works",
                   as_json)

    @group.command("revoke")
    def revoke(name: str, config: config_option = None) -> None:
        """Remove an operator; its token stops working."""
        change(name, config, "revoke_operator", lambda store: store.tokens.revoke(name))
        out.print(f"operator {name} is revoked; its token no longer works", highlight=False)


__all__ = ["add_operator_commands"]
