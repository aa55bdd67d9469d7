"""`switchboard turns list|show`: the turns of the database `serve` records into."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from switchboard.cli_common import (
    ConfigOption,
    CursorOption,
    JsonOption,
    LimitOption,
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
from switchboard.filters import TURN_PROVIDERS, TURN_STATUSES, described

turns_app = group("Inspect channel turns.")
Status = choice(TURN_STATUSES, "Only turns with this status")
Provider = choice(TURN_PROVIDERS, "Only this provider's turns")


@turns_app.command("list")
def turns_list(
    status: Status = None, provider: Provider = None,
    account: Annotated[str | None, typer.Option(help="Only this account's turns")] = None,
    agent: Annotated[str | None, typer.Option(help="Only turns routed to this agent")] = None,
    session_id: Annotated[str | None, typer.Option(help="Only this session's turns")] = None,
    search: Annotated[str | None, typer.Option(
        "--search", "-q", help="A turn, session or event id, or words of the message")] = None,
    cursor: CursorOption = None, limit: LimitOption = 50,
    config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """Newest turns first, with the API's filters."""
    from switchboard.views import turn_json

    filters = {"status": status, "provider": provider, "account": account, "agent": agent,
               "session_id": session_id}
    where = target(config)
    page = with_store(where, lambda s: s.turns.page(filters, cursor, limit, search=search))
    turns, next_cursor = [turn_json(t) for t in page.items], page.next_cursor
    if as_json:
        print_json({"turns": turns, "next_cursor": next_cursor})
        return
    rows = table("id", "status", "received", "from", "agent", whole=("status", "received"))
    for t in turns:
        rows.add_row(t["id"], t["status"], when(t["received_at"]),
                     escape(f"{t['sender']} ({t['account']})"), escape(t["agent"] or "-"))
    chosen = described({**filters, "q": search})
    print_table(rows, f"no turns match {chosen} in {where.where}" if chosen
                else f"no turns in {where.where}")
    if next_cursor:
        console.print(f"more: --cursor {next_cursor}", highlight=False)


FIELDS = ("id", "status", "provider", "account", "event_id", "conversation", "thread", "sender",
          "text", "received_at", "route_reason", "binding", "agent", "session_id", "reply_text",
          "delivery_status", "delivery_attempts", "provider_message_id", "error",
          "duplicate_of")


@turns_app.command("show")
def turns_show(turn_id: Annotated[str, typer.Argument(help="A turn id (turn_…)")],
               config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The whole story of one turn: its fields, then its timeline, one line per step."""
    from switchboard.views import turn_story_json

    where = target(config)
    story = with_store(where, lambda s: s.turns.story(turn_id))
    if story is None:
        err.print(f"no turn {turn_id}", highlight=False)
        raise typer.Exit(1)
    from switchboard.files import file_json

    turn = {**turn_story_json(story), "files": [
        file_json(f) for f in with_store(where, lambda s: s.files.of_turns([turn_id]))]}
    if as_json:
        print_json(turn)
        return
    fields = Table(show_header=False, box=None)
    fields.add_column(no_wrap=True, style="bold")
    fields.add_column(overflow="fold")
    for key in FIELDS:
        if turn.get(key) not in (None, ""):
            fields.add_row(key, escape(when(turn[key]) if key.endswith("_at")
                                       else str(turn[key])))
    console.print(fields)
    console.print("\n[bold]timeline[/bold]")
    for event in turn["events"]:
        console.print(escape(f"  {when(event['at'])}  {event['name']:<16} "
                             f"{_detail(event.get('detail', {}))}"), highlight=False,
                      soft_wrap=True)
    if turn["files"]:
        files = Table("name", "type", "size", "direction", "status", "reason", title="files")
        for file in turn["files"]:
            files.add_row(*(escape(str(file.get(k) or "")) for k in (
                "name", "type", "size", "direction", "status", "reason")))
        console.print(files)


def _detail(detail: dict[str, Any]) -> str:
    """`key=value` pairs, each value whole (a maildir path, a provider's error word for word)."""
    return "  ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                     for k, v in detail.items())


__all__ = ["turns_app"]
