"""The `switchboard` command: serve, check, db, turns, sessions, accounts, inbox, operators,
provider's own commands (from the registry)."""

from __future__ import annotations

from typing import Annotated

import typer

from switchboard import __version__, db
from switchboard.cli_common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    choice,
    console,
    err,
    group,
    load,
    plural,
    print_json,
    table,
    target,
    when,
    with_store,
)
from switchboard.cli_inbox import inbox_app
from switchboard.cli_interactions import add_interaction_commands
from switchboard.cli_operators import add_operator_commands
from switchboard.cli_pairing import pairing_app
from switchboard.cli_providers import add_provider_commands
from switchboard.cli_send import add_send_commands
from switchboard.cli_sessions import sessions_app
from switchboard.cli_takeover import add_takeover_commands
from switchboard.cli_turns import turns_app
from switchboard.providers import PROVIDERS

HELP = {"help_option_names": ["-h", "--help"]}
LogLevel = choice(("debug", "info", "warning"), "How much to log", optional=False)
LogFormat = choice(("text", "json"), "Text lines, or one JSON object per line", optional=False)
app = typer.Typer(help="Connect agents to chat apps and email, and record every turn.",
                  no_args_is_help=True, pretty_exceptions_enable=False, context_settings=HELP,
                  rich_markup_mode=None,
                  add_completion=False)
db_app = group("Database schema.")
app.add_typer(turns_app, name="turns")
app.add_typer(sessions_app, name="sessions")
add_takeover_commands(sessions_app)
app.add_typer(db_app, name="db")
app.add_typer(inbox_app, name="inbox")
app.add_typer(pairing_app, name="pairing")


def _version(value: bool) -> None:
    if value:
        console.print(f"switchboard {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit")
        ] = False) -> None:
    """Connect agents to chat apps and email, and record every turn."""


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Address of the HTTP server")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    smtp_host: Annotated[str, typer.Option(
        help="Address of the SMTP server (apart from --host, so that --host 0.0.0.0 does not "
             "open SMTP to the world)")] = "127.0.0.1",
    smtp_port: Annotated[int, typer.Option(help="SMTP port for inboxes")] = 2525,
    no_smtp: Annotated[bool, typer.Option(
        "--no-smtp", help="Run no SMTP server (email accounts then receive nothing)")] = False,
    log_level: LogLevel = "info", log_format: LogFormat = "text",
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", help="A line per HTTP request")] = True,
    root_path: Annotated[str, typer.Option(
        help="The path prefix a reverse proxy serves Switchboard under (/switchboard)")] = "",
) -> None:
    """Start the webhooks, the operator API, the console, the SMTP server and the workers."""
    import logging.config

    import uvicorn

    from switchboard.app import create_app
    from switchboard.runtime import Runtime
    from switchboard.serving import Serving, log_config

    logging_setup = log_config(log_level, log_format)  # type: ignore[arg-type]
    logging.config.dictConfig(logging_setup)
    if log_level != "debug":  # a line per sweep run is noise
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    else:  # each provider request (its URL redacted, see redact.py); otherwise WARNING
        logging.getLogger("httpx").setLevel(logging.INFO)
    path = config or DEFAULT_CONFIG
    settings = load(path)
    where = db.locate(path, settings.database)
    db.upgrade(where.url)
    logging.getLogger("switchboard").info("database %s (%s)", where.shown(), where.how)
    reach = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # download links' host
    runtime = Runtime(settings, database_url=where.url, smtp_host=smtp_host,
                      smtp_port=None if no_smtp else smtp_port, freeze_gc=True,
                      listen_url=f"http://{reach}:{port}")
    server = uvicorn.Config(create_app(runtime), host=host, port=port, log_level=log_level,
                            log_config=logging_setup,
                            # (at warning the lines are dropped anyway; uvicorn would still
                            # build each one, on the acknowledgement's path)
                            access_log=access_log and log_level != "warning",
                            root_path=root_path.rstrip("/"), timeout_graceful_shutdown=10)
    shown = "localhost" if host in ("0.0.0.0", "::") else host
    console_url = f"http://{shown}:{port}{root_path.rstrip('/')}/"
    Serving(server, runtime, console_url, path).run()


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the config as serve will: every problem at once (file:line and key, exit 1),
    and what serve will do with it (accounts that will start disabled, and why)."""
    path = config or DEFAULT_CONFIG
    settings = load(path)
    for name, reason in settings.disabled.items():
        console.print(f"[yellow]warning[/yellow] account {name} will start disabled: {reason}",
                      highlight=False, soft_wrap=True)
    where = db.locate(path, settings.database)
    console.print(f"{path}: ok ({plural(len(settings.agents), 'agent')}, "
                  f"{plural(len(settings.accounts), 'account')}, "
                  f"{plural(len(settings.bindings), 'binding')}); database "
                  f"{where.shown()} ({where.how})", highlight=False, soft_wrap=True)


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Create the database or bring its schema up to date (serve does this at start)."""
    where = target(config)
    db.upgrade(where.database.url)
    console.print(f"database is up to date: {where.where}", highlight=False, soft_wrap=True)


@app.command()
def accounts(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Each account's health: enabled, last traffic, last error, rejected requests."""
    from switchboard.redact import Redactor
    from switchboard.views import account_rows

    where = target(config)
    settings = where.config or load(DEFAULT_CONFIG)
    redact = Redactor.from_config(settings, where.database.url)
    rows = account_rows(settings, {}, with_store(where, lambda s: s.accounts.health()))
    if as_json:
        print_json({"accounts": rows}, redact)
        return
    rows_out = table("account", "provider", "status", "last inbound", "last outbound",
                     "last error", "rejected", id_width=0,
                     whole=("last inbound", "last outbound"))
    for r in rows:
        status = r["status"] + (f" ({r['disabled_reason']})" if r["disabled_reason"] else "")
        rejected = ", ".join(f"{k}={v}" for k, v in r["rejected"].items())
        rows_out.add_row(r["name"], r["provider"], status, when(r["last_inbound_at"]),
                         when(r["last_outbound_at"]), redact(r["last_error"] or "-"),
                         rejected or "-")
    console.print(rows_out)


add_operator_commands(app)
add_send_commands(app, turns_app)
# the database found as serve finds it, without --config (cli_common.target)
add_interaction_commands(app, lambda work: with_store(target(None), work), console, err)
add_provider_commands(app, PROVIDERS, lambda path: load(path or DEFAULT_CONFIG), console, err,
                      ConfigOption, groups={"inbox": inbox_app})


def main() -> None:
    app()
