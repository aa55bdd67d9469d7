"""The `switchboard` command: serve, check, db, turns, sessions, accounts, inbox, and each
provider's own commands (from the registry)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from switchboard import db
from switchboard.cli_interactions import add_interaction_commands
from switchboard.cli_operators import add_operator_commands
from switchboard.cli_providers import add_provider_commands
from switchboard.config import Config, load_config
from switchboard.errors import ConfigError
from switchboard.providers import PROVIDERS

if TYPE_CHECKING:
    from switchboard.controls import SessionControls
    from switchboard.store import Store

T = TypeVar("T")
app = typer.Typer(help="Connect agents to chat apps and email, and record every turn.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
turns_app = typer.Typer(help="Inspect channel turns.", no_args_is_help=True)
sessions_app = typer.Typer(help="Inspect and control sessions.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(turns_app, name="turns")
app.add_typer(sessions_app, name="sessions")
app.add_typer(db_app, name="db")
console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[str, typer.Option("--config", "-c", help="Path to bindings.yaml")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _load(path: str, *, strict_env: bool) -> Config:
    try:
        return load_config(path, strict_env=strict_env)
    except ConfigError as error:
        for problem in error.problems:
            err.print(f"[red]error[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _with_store(work: Callable[[Store], Awaitable[T]]) -> T:
    """Run one query against the configured database (after bringing its schema up to date)."""
    from switchboard.clock import Clock
    from switchboard.store import Store, create_engine

    db.upgrade()

    async def run() -> T:
        engine = create_engine()
        store = Store(engine, Clock())
        try:
            return await work(store)
        finally:
            store.close()
            await engine.dispose()

    return asyncio.run(run())


def _keep_ids_whole(table: Table) -> None:
    """Ids must survive a pipe or a narrow terminal whole, to be pasted into `show`."""
    table.columns[0].no_wrap = True
    table.columns[0].min_width = 25


def _print_json(data: Any, redact: Callable[[str], str] | None = None) -> None:
    """JSON on stdout, without secrets: those of `redact`'s config, and the providers'
    secret patterns."""
    from switchboard.redact import Redactor

    text = json.dumps(data, indent=2, default=str)
    sys.stdout.write((redact or Redactor())(text) + "\n")


@app.command()
def serve(
    config: ConfigOption = "bindings.yaml",
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8080,
    smtp_port: Annotated[int, typer.Option(help="SMTP port for inboxes")] = 2525,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Start the webhooks, the operator API, the SMTP server and the workers."""
    import uvicorn

    from switchboard.app import create_app
    from switchboard.runtime import Runtime

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if log_level != "debug":  # a line per sweep run is noise
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    else:  # each provider request (its URL redacted, see redact.py); otherwise WARNING
        logging.getLogger("httpx").setLevel(logging.INFO)
    settings = _load(config, strict_env=False)
    for name, reason in settings.disabled.items():
        err.print(f"[yellow]account {name} is disabled:[/yellow] {reason}", highlight=False)
    db.upgrade()
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    runtime = Runtime(settings, smtp_port=smtp_port, smtp_host=host, freeze_gc=True,
                      listen_url=f"http://{shown}:{port}")
    uvicorn.run(create_app(runtime), host=host, port=port, log_level=log_level,
                access_log=log_level == "debug", timeout_graceful_shutdown=10)


@app.command()
def check(config: ConfigOption = "bindings.yaml") -> None:
    """Validate the config: every problem at once, with file:line and the key."""
    settings = _load(config, strict_env=True)
    for name, reason in settings.disabled.items():
        console.print(f"[yellow]warning[/yellow] account {name} will be disabled: {reason}",
                      highlight=False)
    console.print(f"{config}: ok ({len(settings.agents)} agents, {len(settings.accounts)} "
                  f"accounts, {len(settings.bindings)} bindings)", highlight=False)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations to SWITCHBOARD_DATABASE_URL (default sqlite:///./switchboard.db)."""
    db.upgrade()
    console.print("database is up to date")


@turns_app.command("list")
def turns_list(
    status: str | None = None, provider: str | None = None, account: str | None = None,
    agent: str | None = None, session_id: str | None = None, cursor: str | None = None,
    limit: int = 50, as_json: JsonOption = False,
) -> None:
    """Newest turns first, with the API's filters."""
    filters = {"status": status, "provider": provider, "account": account, "agent": agent,
               "session_id": session_id}
    from switchboard.views import turn_json

    page = _with_store(lambda s: s.turns.page(filters, cursor, limit))
    turns, next_cursor = [turn_json(t) for t in page.items], page.next_cursor
    if as_json:
        _print_json({"turns": turns, "next_cursor": next_cursor})
        return
    table = Table("id", "status", "received", "account", "from", "agent")
    _keep_ids_whole(table)
    table.columns[1].no_wrap = True
    for t in turns:
        table.add_row(t["id"], t["status"], (t["received_at"] or "")[:19].replace("T", " "),
                      f"{t['provider']}/{t['account']}", f"{t['sender']} in {t['conversation']}",
                      t["agent"] or "")
    console.print(table)
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}")


@turns_app.command("show")
def turns_show(turn_id: str, as_json: JsonOption = False) -> None:
    """The whole story of one turn: fields and timeline."""
    from switchboard.views import turn_story_json

    story = _with_store(lambda s: s.turns.story(turn_id))
    if story is None:
        err.print(f"no turn {turn_id}")
        raise typer.Exit(1)
    from switchboard.files import file_json

    turn = {**turn_story_json(story), "files": [
        file_json(f) for f in _with_store(lambda s: s.files.of_turns([turn_id]))]}
    if as_json:
        _print_json(turn)
        return
    fields = Table(show_header=False)
    for key in ("id", "provider", "account", "event_id", "conversation", "thread", "sender",
                "text", "received_at", "status", "route_reason", "binding", "agent",
                "session_id", "reply_text", "delivery_status", "delivery_attempts",
                "provider_message_id", "error", "duplicate_of"):
        if turn.get(key) not in (None, ""):
            fields.add_row(key, str(turn[key]))
    console.print(fields)
    timeline = Table("at", "event", "detail", title="timeline")
    for event in turn["events"]:
        timeline.add_row(event["at"], event["name"], json.dumps(event.get("detail", {})))
    console.print(timeline)
    if turn["files"]:
        files = Table("name", "type", "size", "direction", "status", "reason", title="files")
        for file in turn["files"]:
            files.add_row(*(str(file.get(k) or "") for k in ("name", "type", "size",
                                                             "direction", "status", "reason")))
        console.print(files)


@sessions_app.command("list")
def sessions_list(
    agent: str | None = None, state: str | None = None, user: str | None = None,
    source: str | None = None, tag: str | None = None, cursor: str | None = None,
    started_after: Annotated[str | None, typer.Option(help="ISO date or time")] = None,
    started_before: Annotated[str | None, typer.Option(help="ISO date or time")] = None,
    include_archived: bool = False, config: ConfigOption = "bindings.yaml",
    limit: int = 50, as_json: JsonOption = False,
) -> None:
    """Newest sessions first, with the API's filters."""
    from datetime import datetime
    from pathlib import Path

    from switchboard.views import session_json

    filters: dict[str, Any] = {"agent": agent, "state": state, "user": user, "source": source,
                               "tag": tag, "include_archived": include_archived}
    if Path(config).exists():
        filters["archive_after"] = _load(config, strict_env=False).sessions.auto_archive_after
    for key, value in (("started_after", started_after), ("started_before", started_before)):
        if value:
            try:
                filters[key] = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                err.print(f"--{key.replace('_', '-')}: {value!r} is not an ISO date or time")
                raise typer.Exit(1) from None
    page = _with_store(lambda s: s.sessions.page(filters, cursor, limit))
    sessions, next_cursor = [session_json(s) for s in page.items], page.next_cursor
    if as_json:
        _print_json({"sessions": sessions, "next_cursor": next_cursor})
        return
    table = Table("id", "agent", "state", "source", "user", "started", "last activity", "turns")
    _keep_ids_whole(table)
    for s in sessions:
        table.add_row(s["id"], s["agent"], s["state"], s["source"], s["user_id"],
                      s["started_at"], s["last_activity_at"], str(s["turn_count"]))
    console.print(table)


@sessions_app.command("show")
def sessions_show(session_id: str, as_json: JsonOption = False) -> None:
    """One session with its transcript."""
    from switchboard.views import session_json, transcript_json

    async def load(store: Store) -> dict[str, Any] | None:
        found = await store.sessions.get(session_id)
        if found is None:
            return None
        return {**session_json(found),
                "transcript": transcript_json(await store.sessions.transcript(session_id))}

    session = _with_store(load)
    if session is None:
        err.print(f"no session {session_id}")
        raise typer.Exit(1)
    if as_json:
        _print_json(session)
        return
    console.print(f"[bold]{session['id']}[/bold] agent={session['agent']} "
                  f"state={session['state']} source={session['source']}", highlight=False)
    for entry in session["transcript"]:
        console.print(f"{entry['at']}  [bold]{entry['role']:>8}[/bold]  {entry['text']}",
                      highlight=False)


CLI = "cli"  # the actor the transcript and audit log name for actions from the terminal


def _session_action(action: Callable[[SessionControls], Awaitable[str]],
                    config: Config | None = None) -> None:
    """Operator actions from the terminal, by the same controls as the API's; a running
    `serve` streams the change on `/api/events` and answers held turns after `resume`."""
    from sessions import SessionError
    from sessions.events import EventHub
    from switchboard.controls import SessionControls
    from switchboard.models import new_id

    async def work(store: Store) -> str:
        return await action(SessionControls(store, EventHub(), origin=new_id("cli"),
                                            agents=config.agents if config else {},
                                            audited=True))

    try:
        console.print(_with_store(work), highlight=False)
    except SessionError as error:
        err.print(str(error), highlight=False)
        raise typer.Exit(1) from None


@sessions_app.command("pause")
def sessions_pause(session_id: str) -> None:
    """Hold new turns of the session until it is resumed."""
    _session_action(lambda controls: controls.pause(session_id, CLI))


@sessions_app.command("resume")
def sessions_resume(session_id: str) -> None:
    """Make the session live again; a running `serve` answers the turns it held."""
    _session_action(lambda controls: controls.resume(session_id, CLI))


@sessions_app.command("end")
def sessions_end(session_id: str) -> None:
    """End the session (ending an ended session changes nothing)."""
    _session_action(lambda controls: controls.end(session_id, CLI))


@sessions_app.command("transfer")
def sessions_transfer(session_id: str,
                      agent: Annotated[str, typer.Option("--to", help="Target agent")],
                      config: ConfigOption = "bindings.yaml") -> None:
    """Hand the conversation to another agent."""
    _session_action(lambda controls: controls.transfer(session_id, agent, CLI),
                    _load(config, strict_env=False))


@sessions_app.command("delete")
def sessions_delete(session_id: str) -> None:
    """Delete an ended session and its transcript (recorded in the audit log)."""
    _session_action(lambda controls: controls.delete(session_id, CLI))


@app.command()
def accounts(config: ConfigOption = "bindings.yaml", as_json: JsonOption = False) -> None:
    """Each account's health: enabled, last traffic, last error, rejected requests."""
    from switchboard.redact import Redactor
    from switchboard.views import account_rows

    settings = _load(config, strict_env=False)
    redact = Redactor.from_config(settings, db.database_url())
    rows = account_rows(settings, {}, _with_store(lambda s: s.accounts.health()))
    if as_json:
        _print_json({"accounts": rows}, redact)
        return
    table = Table("account", "provider", "status", "last inbound", "last outbound",
                  "last error", "rejected")
    for r in rows:
        status = r["status"] + (f" ({r['disabled_reason']})" if r["disabled_reason"] else "")
        rejected = ", ".join(f"{k}={v}" for k, v in r["rejected"].items())
        table.add_row(r["name"], r["provider"], status, r["last_inbound_at"] or "-",
                      r["last_outbound_at"] or "-", redact(r["last_error"] or "-"),
                      rejected or "-")
    console.print(table)


add_operator_commands(app, _with_store, lambda path: _load(path, strict_env=False), console,
                      err, ConfigOption)
add_interaction_commands(app, _with_store, console, err)


inbox_app = typer.Typer(help="Email inboxes of agents.", no_args_is_help=True)
app.add_typer(inbox_app, name="inbox")
add_provider_commands(app, PROVIDERS, lambda path: _load(path, strict_env=False), console, err,
                      ConfigOption, groups={"inbox": inbox_app})


@inbox_app.command("provision")
def inbox_provision(
    agent: str,
    account: Annotated[str | None, typer.Option(
        help="Email account (default: the only one)")] = None,
    local_part: Annotated[str | None, typer.Option(
        "--local-part", help="The part before @ (default: the agent's name)")] = None,
    config: ConfigOption = "bindings.yaml",
    as_json: JsonOption = False,
) -> None:
    """Give an agent an email address on an email account's domain; prints the address."""
    from switchboard.errors import InboxRefused, NoSuchAgent
    from switchboard.inboxes import provision
    from switchboard.views import inbox_json

    settings = _load(config, strict_env=False)
    try:
        inbox = _with_store(lambda s: provision(s, settings, agent, account, local_part))
    except (InboxRefused, NoSuchAgent) as error:
        err.print(str(error), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        _print_json(inbox_json(inbox))
        return
    console.print(inbox.address, highlight=False, soft_wrap=True)


@inbox_app.command("list")
def inbox_list(as_json: JsonOption = False) -> None:
    """Every provisioned address, revoked ones included."""
    from switchboard.views import inbox_json

    inboxes = [inbox_json(inbox) for inbox in _with_store(lambda s: s.inboxes.all())]
    if as_json:
        _print_json({"inboxes": inboxes})
        return
    table = Table("address", "agent", "account", "created", "revoked")
    table.columns[0].no_wrap = True
    for i in inboxes:
        table.add_row(i["email_address"], i["agent"], i["account"], i["created_at"],
                      i["revoked_at"] or "-")
    console.print(table)


@inbox_app.command("revoke")
def inbox_revoke(address: str) -> None:
    """Refuse mail to the address from now on (it is never handed to anyone else)."""
    inbox = _with_store(lambda s: s.inboxes.revoke(address))
    if inbox is None:
        err.print(f"no inbox {address}", highlight=False)
        raise typer.Exit(1)
    console.print(f"{inbox.address} is revoked; mail to it is refused with 550", highlight=False)


def main() -> None:
    app()
