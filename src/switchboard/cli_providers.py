"""Each provider's own CLI commands (`switchboard <provider> <command> ACCOUNT --option …`), made
Typer commands from the registry: the account is looked up in the config and checked before
the provider's `run` is called, and what it prints is redacted."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import typer
from rich.console import Console

from channels.adapter import AccountCommand, Provider
from channels.errors import CommandFailed
from switchboard.config import Config


def add_provider_commands(app: typer.Typer, providers: Mapping[str, Provider],
                          load: Callable[[str], Config], out: Console, err: Console,
                          config_option: Any,
                          groups: Mapping[str, typer.Typer] | None = None) -> None:
    """`switchboard <group> <command>` for every command of every provider; the group is the
    provider's `command_group` (one of `groups` that exist already, or a new one) or name."""
    made: dict[str, typer.Typer] = {}
    for provider in providers.values():
        if not provider.commands:
            continue
        name = provider.command_group or provider.name
        group = (groups or {}).get(name) or made.get(name)
        if group is None:
            group = made[name] = typer.Typer(help=f"Set-up of {provider.name} accounts.",
                                             no_args_is_help=True)
            app.add_typer(group, name=name)
        for command_name, command in provider.commands.items():
            group.command(command_name)(_account_command(provider, command, load, out, err,
                                                         config_option))


def _account_command(provider: Provider, command: AccountCommand, load: Callable[[str], Config],
                     out: Console, err: Console, config_option: Any) -> Callable[..., None]:
    """A provider's command as a Typer command: `ACCOUNT`, its `--options`, `--config`."""

    def run(account: str, config: str, **options: str) -> None:
        from switchboard.redact import Redactor

        settings = load(config)
        account_settings = settings.accounts.get(account)
        if account_settings is None or account_settings.provider != provider.name:
            err.print(f"no {provider.name} account named {account!r} in {config}",
                      highlight=False)
            raise typer.Exit(1)
        if account in settings.disabled:
            err.print(f"account {account} is disabled: {settings.disabled[account]}",
                      highlight=False)
            raise typer.Exit(1)
        redact = Redactor.from_config(settings)
        try:
            said = asyncio.run(command.run(account, account_settings, **options))
        except CommandFailed as error:
            err.print(redact(str(error)), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        out.print(redact(said), highlight=False, soft_wrap=True)

    keyword = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("account", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                annotation=str)]
    for option in command.options:
        params.append(inspect.Parameter(
            option.name.replace("-", "_"), keyword,
            annotation=Annotated[str, typer.Option(f"--{option.name}", help=option.help)],
            default=inspect.Parameter.empty if option.default is None else option.default))
    params.append(inspect.Parameter("config", keyword, annotation=config_option,
                                    default="bindings.yaml"))

    def entry(**values: Any) -> None:
        run(values.pop("account"), values.pop("config"), **values)

    # Typer reads the parameters from the signature: the command's own options, built here
    entry.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    entry.__annotations__ = {p.name: p.annotation for p in params}
    entry.__doc__ = command.help
    return entry


__all__ = ["add_provider_commands"]
