"""`switchboard sessions …`: list and show sessions, and the operator's actions on them, by the
same controls as the API's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from switchboard.cli_common import (
    ConfigOption,
    CursorOption,
    JsonOption,
    LimitOption,
    Target,
    choice,
    console,
    err,
    group,
    print_json,
    print_table,
    table,
    target,
    when,
    with_store,
)
from switchboard.filters import SESSION_SOURCES, SESSION_STATES, SESSION_TAGS, described

if TYPE_CHECKING:
    from switchboard.controls import SessionControls
    from switchboard.store import Store

sessions_app = group("Inspect and control sessions.")
SessionId = Annotated[str, typer.Argument(help="A session id (ses_…)")]
When = Annotated[str | None, typer.Option(metavar="ISO", help="ISO date or time")]
State = choice(SESSION_STATES, "Only sessions in this state")
Source = choice(SESSION_SOURCES, "Only sessions from this provider")
Tag = choice(SESSION_TAGS, "Only sessions with this tag")


@sessions_app.command("list")
def sessions_list(
    agent: Annotated[str | None, typer.Option(help="Only this agent's sessions")] = None,
    state: State = None,
    user: Annotated[str | None, typer.Option(help="Only this person's (provider user id)")
                    ] = None,
    source: Source = None, tag: Tag = None,
    started_after: When = None, started_before: When = None,
    include_archived: Annotated[bool, typer.Option(
        "--include-archived", help="Also ended sessions older than auto_archive_after")] = False,
    cursor: CursorOption = None, limit: LimitOption = 50,
    config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """Newest sessions first, with the API's filters."""
    from switchboard.views import session_json

    where = target(config)
    filters: dict[str, Any] = {"agent": agent, "state": state, "user": user, "source": source,
                               "tag": tag, "include_archived": include_archived}
    if where.config is not None:
        filters["archive_after"] = where.config.sessions.auto_archive_after
    for key, value in (("started_after", started_after), ("started_before", started_before)):
        if value:
            try:
                filters[key] = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                err.print(f"--{key.replace('_', '-')}: {value!r} is not an ISO date or time",
                          highlight=False)
                raise typer.Exit(1) from None
    page = with_store(where, lambda s: s.sessions.page(filters, cursor, limit))
    sessions, next_cursor = [session_json(s) for s in page.items], page.next_cursor
    if as_json:
        print_json({"sessions": sessions, "next_cursor": next_cursor})
        return
    rows = table("id", "agent", "state", "user", "last activity", "turns",
                 whole=("agent", "state", "last activity"))
    for s in sessions:
        rows.add_row(s["id"], s["agent"], s["state"], f"{s['user_id']} ({s['source']})",
                     when(s["last_activity_at"]), str(s["turn_count"]))
    chosen = described(filters)
    print_table(rows, f"no sessions match {chosen} in {where.where}" if chosen
                else f"no sessions in {where.where}")
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}", highlight=False)


@sessions_app.command("show")
def sessions_show(session_id: SessionId, config: ConfigOption = None,
                  as_json: JsonOption = False) -> None:
    """One session with its transcript."""
    from switchboard.views import marked_transcript, session_json

    async def load(store: Store) -> dict[str, Any] | None:
        found = await store.sessions.get(session_id)
        if found is None:
            return None
        return {**session_json(found), "transcript": await marked_transcript(store,
                                                                            session_id)}

    session = with_store(target(config), load)
    if session is None:
        err.print(f"no session {session_id}", highlight=False)
        raise typer.Exit(1)
    if as_json:
        print_json(session)
        return
    console.print(f"[bold]{session['id']}[/bold] agent={session['agent']} "
                  f"state={session['state']} source={session['source']}", highlight=False)
    for entry in session["transcript"]:
        mark = entry.get("delivery")
        note = f"  [{mark['status']}: {mark['error']}]" if mark and mark.get("error") else \
            f"  [{mark['status']}]" if mark else ""
        console.print(f"{when(entry['at'])}  [bold]{entry['role']:>8}[/bold]  "
                      f"{escape(entry['text'] + note)}", highlight=False, soft_wrap=True)


CLI = "cli"  # the actor the transcript and audit log name for actions from the terminal


def _session_action(action: Callable[[SessionControls], Awaitable[str]], where: Target) -> None:
    """Operator actions from the terminal, by the same controls as the API's; a running
    `serve` streams the change on `/api/events` and answers held turns after `resume`."""
    from sessions import SessionError
    from sessions.events import EventHub
    from switchboard.config import FilesConfig
    from switchboard.controls import SessionControls
    from switchboard.files import DirectoryBlobs, FileService, files_dir
    from switchboard.models import new_id

    agents = where.config.agents if where.config else {}
    kept = where.config.files if where.config else FilesConfig()

    async def work(store: Store) -> str:  # `delete` also removes blobs nothing references
        files = FileService(store, DirectoryBlobs(files_dir(kept, where.database.url)), kept, "")
        return await action(SessionControls(store, EventHub(), origin=new_id("cli"),
                                            agents=agents, audited=True,
                                            forget_blobs=files.forget))

    try:
        console.print(with_store(where, work), highlight=False)
    except SessionError as error:
        err.print(str(error), highlight=False)
        raise typer.Exit(1) from None


@sessions_app.command("pause")
def sessions_pause(session_id: SessionId, config: ConfigOption = None) -> None:
    """Hold new turns of the session until it is resumed."""
    _session_action(lambda controls: controls.pause(session_id, CLI), target(config))


@sessions_app.command("resume")
def sessions_resume(session_id: SessionId, config: ConfigOption = None) -> None:
    """Make the session live again; a running `serve` answers the turns it held."""
    _session_action(lambda controls: controls.resume(session_id, CLI), target(config))


@sessions_app.command("end")
def sessions_end(session_id: SessionId, config: ConfigOption = None) -> None:
    """End the session (ending an ended session changes nothing)."""
    _session_action(lambda controls: controls.end(session_id, CLI), target(config))


@sessions_app.command("transfer")
def sessions_transfer(session_id: SessionId,
                      agent: Annotated[str, typer.Option("--to", help="Target agent")],
                      config: ConfigOption = None) -> None:
    """Hand the conversation to another agent."""
    _session_action(lambda controls: controls.transfer(session_id, agent, CLI),
                    target(config))


@sessions_app.command("delete")
def sessions_delete(session_id: SessionId, config: ConfigOption = None) -> None:
    """Delete an ended session and its transcript (recorded in the audit log)."""
    _session_action(lambda controls: controls.delete(session_id, CLI), target(config))


__all__ = ["sessions_app"]
