"""`switchboard operators add|list|rotate|revoke`: operators kept in the database, managed
on a machine that reaches it, with no token needed (so a lost admin token is recovered
locally). A running `serve` picks a change up within a second or so."""

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from switchboard.config import Config
from switchboard.errors import NotFound, OperatorRefused
from switchboard.operators import ROLES, checked_operator, new_token, operator_rows
from switchboard.store import Store

WithStore = Callable[[Callable[[Store], Awaitable[Any]]], Any]
CLI = "cli"  # the actor the audit log names for actions from the terminal


def add_operator_commands(app: typer.Typer, with_store: WithStore,
                          load: Callable[[str], Config], out: Console, err: Console,
                          config_option: Any) -> None:
    """The `operators` group; `with_store` runs one piece of work on the configured database,
    `load` reads the config (its operators and agents, when the file is there)."""
    group = typer.Typer(help="Operators and their tokens (kept in the database).",
                        no_args_is_help=True)
    app.add_typer(group, name="operators")

    def config_of(path: str) -> Config | None:
        return load(path) if Path(path).exists() else None

    json_option = Annotated[bool, typer.Option("--json", help="Machine-readable output")]

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
        config: config_option = "bindings.yaml",
        as_json: json_option = False,
    ) -> None:
        """Add an operator; prints its new token once."""
        settings = config_of(config)
        listed = agents.split(",") if agents is not None else None
        token = new_token()

        async def work(store: Store) -> list[str] | None:
            if settings is not None and name in {op.name for op in settings.operators}:
                raise OperatorRefused(f"operator {name} is defined in {config}; change it there")
            known = settings.agents if settings is not None else (listed or [])
            limited = checked_operator(name, role, listed, known)
            await store.tokens.add(name, role, token, limited)
            await store.audit.record(CLI, "add_operator", name,
                                     {"role": role, "agents": limited})
            return limited

        try:
            limited = with_store(work)
        except OperatorRefused as error:
            raise refused(error) from None
        scope = f"limited to {', '.join(limited)}" if limited else "every agent"
        show_token(name, token, f"operator {name} ({role}, {scope}) is added", as_json,
                   role=role, agents=limited)

    @group.command("list")
    def list_(config: config_option = "bindings.yaml", as_json: json_option = False) -> None:
        """Every operator, from the config and the database (never a token)."""
        settings = config_of(config)
        configured = {op.name: op for op in settings.operators} if settings else {}
        rows = operator_rows(with_store(lambda store: store.tokens.all()), configured)
        if as_json:
            sys.stdout.write(json.dumps({"operators": rows}) + "\n")
            return
        table = Table("name", "role", "agents", "kept in", "created", "rotated")
        for r in rows:
            table.add_row(r["name"], r["role"], ", ".join(r["agents"] or ["every agent"]),
                          r["source"], r["created_at"] or "-", r["rotated_at"] or "-")
        out.print(table)

    def change(name: str, config: str, action: str,
               work: Callable[[Store], Awaitable[None]]) -> None:
        settings = config_of(config)

        async def run(store: Store) -> None:
            if settings is not None and name in {op.name for op in settings.operators}:
                raise OperatorRefused(f"operator {name} is defined in {config}; change it there")
            await work(store)
            await store.audit.record(CLI, action, name)

        try:
            with_store(run)
        except (OperatorRefused, NotFound) as error:
            raise refused(error) from None

    @group.command("rotate")
    def rotate(name: str, config: config_option = "bindings.yaml",
               as_json: json_option = False) -> None:
        """Give an operator a new token (printed once); the old one stops working."""
        token = new_token()
        change(name, config, "rotate_operator", lambda store: store.tokens.rotate(name, token))
        show_token(name, token, f"operator {name} has a new token; the old one no longer works",
                   as_json)

    @group.command("revoke")
    def revoke(name: str, config: config_option = "bindings.yaml") -> None:
        """Remove an operator; its token stops working."""
        change(name, config, "revoke_operator", lambda store: store.tokens.revoke(name))
        out.print(f"operator {name} is revoked; its token no longer works", highlight=False)


__all__ = ["add_operator_commands"]
