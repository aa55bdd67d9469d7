"""What every `switchboard` command shares: the `--config` and `--json` options, the config and
the database found the way `serve` finds them, and how answers are printed."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import OperationalError

from switchboard import db
from switchboard.config import Config, load_config
from switchboard.errors import ConfigError

if TYPE_CHECKING:
    from switchboard.store import Store

T = TypeVar("T")
DEFAULT_CONFIG = "bindings.yaml"
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[str | None, typer.Option(
    "--config", "-c", metavar="FILE", show_default=False,
    help="The config serve runs with; the database is found from it as serve finds it "
         "(default: ./bindings.yaml)")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
LimitOption = Annotated[int, typer.Option(min=1, max=500, help="At most this many rows")]
CursorOption = Annotated[str | None, typer.Option(
    metavar="CURSOR", help="Continue a listing (the `more: --cursor …` it printed)")]


def group(help: str) -> typer.Typer:
    """A command group as every one of ours is: `-h`, plain help (flags without a
    placeholder), help when called with nothing."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]})


def choice(values: Sequence[str], help: str, *, optional: bool = True) -> Any:
    """The annotation of an option whose value must be one of `values` (listed in the help,
    and in the error for any other)."""
    kind: Any = Literal[tuple(values)]  # type: ignore[valid-type]
    return Annotated[kind | None if optional else kind,
                     typer.Option(help=help, show_default=optional is False)]


def load(path: str, *, strict_env: bool = False) -> Config:
    """The validated config, or every problem printed and exit 1."""
    try:
        return load_config(path, strict_env=strict_env)
    except ConfigError as error:
        for problem in error.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@dataclass(frozen=True)
class Target:
    """The config a command was pointed at (None when the default file is absent) and the
    database it names."""

    config: Config | None
    database: db.Located

    @property
    def where(self) -> str:
        return f"{self.database.shown()} ({self.database.how})"


def target(config: str | None) -> Target:
    """The config (`--config`, else ./bindings.yaml when there is one) and its database."""
    path = config or DEFAULT_CONFIG
    settings = load(path) if config is not None or Path(path).exists() else None
    return Target(settings, db.locate(path, settings.database if settings else ""))


def with_store(where: Target, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run one query against the target's database. A database that does not exist is never
    created here: only `serve` and `db upgrade` make one."""
    from switchboard.clock import Clock
    from switchboard.store import Store, create_engine

    if (missing := where.database.missing()) is not None:
        err.print(f"{missing}: nothing was ever recorded there. Pass the --config that serve "
                  f"runs with, or set {db.ENV}.", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    url = where.database.url
    try:
        db.upgrade(url)
    except OperationalError as error:  # PostgreSQL down, a database that does not exist
        err.print(f"cannot use the database {where.where}: {str(error.orig).strip()}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None

    async def run() -> T:
        engine = create_engine(url)
        store = Store(engine, Clock())
        if where.config is not None:  # what the CLI changes is announced too (serve sends it)
            store.hook_routes.configure(where.config.webhooks)
        try:
            return await work(store)
        finally:
            store.close()
            await engine.dispose()

    return asyncio.run(run())


def when(value: str | None) -> str:
    """The one timestamp format of every table: `2026-12-02 09:15:03` (UTC)."""
    if not value:
        return "-"
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def table(*columns: str, ids: int = 1, id_width: int = 25,
          whole: tuple[str, ...] = ()) -> Table:
    """A table for 80 columns: light rules; the first `ids` columns and those named in
    `whole` (timestamps, statuses) are never cut or wrapped (ids are pasted into `show`);
    other text folds onto more lines rather than being cut off."""
    out = Table(*columns, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for i, column in enumerate(out.columns):
        column.overflow = "fold"
        if i < ids or column.header in whole:
            column.no_wrap = True
        if i < ids:
            column.min_width = id_width
    return out


def print_table(rows: Table, empty: str) -> None:
    """The table, or `empty` when it has no rows (an empty frame says nothing)."""
    console.print(rows if rows.row_count else empty, highlight=False, soft_wrap=True)


def print_json(data: Any, redact: Callable[[str], str] | None = None) -> None:
    """JSON on stdout, without secrets: those of `redact`'s config, and the providers'
    secret patterns."""
    from switchboard.redact import Redactor

    text = json.dumps(data, indent=2, default=str)
    sys.stdout.write((redact or Redactor())(text) + "\n")


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


__all__ = ["ConfigOption", "JsonOption", "Target", "console", "err", "load", "print_json",
           "target", "when", "with_store"]
