"""`switchboard send AGENT --account A --to user:U123 TEXT [--at TIME]`: an agent starts a
conversation, through the running `serve`'s API (it holds the provider connections: a direct
message is opened there), and `switchboard turns cancel ID`: a scheduled message cancelled, on the
database `serve` uses (no server needed). docs/outbound.md has the contract."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import typer

from channels.units import parse_duration
from switchboard.cli_common import (
    ConfigOption,
    JsonOption,
    console,
    err,
    print_json,
    target,
    with_store,
)

KINDS = ("user", "conversation", "email")


def recipient(value: str, thread: str | None, subject: str | None) -> dict[str, str]:
    """`user:U123`, `conversation:C123` or `email:ann@example.com` as the API's `to`."""
    kind, _, ident = value.partition(":")
    if kind not in KINDS or not ident:
        raise typer.BadParameter("write user:U123, conversation:C123 or "
                                 "email:ann@example.com", param_hint="--to")
    to = {kind: ident}
    if thread:
        to["thread"] = thread
    if subject is not None:
        to["subject"] = subject
    return to


def send_time(value: str | None) -> str | None:
    """ISO 8601 (UTC when it names no zone), or a delay from now (`10m`, `2h`)."""
    if not value:
        return None
    try:
        delay = parse_duration(value)
    except ValueError:
        delay = None
    if delay is not None:
        return (datetime.now(UTC) + delay).isoformat()
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("write an ISO time (2026-12-02T09:00:00Z) or a delay "
                                 "(10m, 2h)", param_hint="--at") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()


def add_send_commands(app: typer.Typer, turns_app: typer.Typer) -> None:
    """Register `send` on the root app and `cancel` on `turns`."""

    @app.command("send")
    def send(
        agent: Annotated[str, typer.Argument(help="The agent that writes")],
        text: Annotated[str, typer.Argument(help="What it says")],
        account: Annotated[str, typer.Option(help="The account to write through")],
        to: Annotated[str, typer.Option(
            help="user:U123 | conversation:C123 | email:ann@example.com")],
        at: Annotated[str | None, typer.Option(
            help="When: an ISO time (UTC without a zone) or a delay such as 10m")] = None,
        thread: Annotated[str | None, typer.Option(help="The thread of a conversation")] = None,
        subject: Annotated[str | None, typer.Option(help="The subject of an email")] = None,
        new: Annotated[bool, typer.Option(
            "--new", help="End the open session of the scope and start another")] = False,
        url: Annotated[str, typer.Option(envvar="SWITCHBOARD_URL",
                                         help="Where serve answers")] = "http://127.0.0.1:8080",
        token: Annotated[str | None, typer.Option(
            envvar="SWITCHBOARD_TOKEN",
            help="An operator's token (default: $SWITCHBOARD_ADMIN_TOKEN)")] = None,
        config: ConfigOption = None, as_json: JsonOption = False,
    ) -> None:
        """Send a message as AGENT now or --at a time; the person's reply joins its session."""
        del config  # accepted like every command's; the server has its own
        body: dict[str, Any] = {"account": account, "to": recipient(to, thread, subject),
                                "text": text, "session": "new" if new else "continue"}
        if (when := send_time(at)) is not None:
            body["send_at"] = when
        token = token or os.environ.get("SWITCHBOARD_ADMIN_TOKEN")
        if not token:
            err.print("no operator token: pass --token or set SWITCHBOARD_TOKEN (or "
                      "SWITCHBOARD_ADMIN_TOKEN)", highlight=False)
            raise typer.Exit(1)
        try:
            response = httpx.post(f"{url.rstrip('/')}/api/agents/{agent}/messages", json=body,
                                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
        except httpx.HTTPError as error:
            err.print(f"cannot reach serve at {url}: {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        answer = _json(response)
        if response.status_code >= 400:
            words = answer.get("detail") or answer.get("error") or response.text
            err.print(f"refused ({response.status_code}): {words}", highlight=False,
                      soft_wrap=True)
            raise typer.Exit(1)
        if as_json:
            print_json(answer)
            return
        console.print(f"{answer['turn_id']} in session {answer['session_id']}, sending at "
                      f"{answer['send_at']}", highlight=False, soft_wrap=True)

    @turns_app.command("cancel")
    def cancel(turn_id: Annotated[str, typer.Argument(help="An outbound turn (turn_…)")],
               config: ConfigOption = None, as_json: JsonOption = False) -> None:
        """Cancel a scheduled message until it is sent (as the operator `cli`)."""
        from switchboard.errors import ActionRefused, NotFound
        from switchboard.views import turn_story_json

        async def work(store: Any) -> dict[str, Any]:
            await store.outbound.cancel(turn_id, "cli")
            return turn_story_json(await store.turns.story(turn_id))

        try:
            story = with_store(target(config), work)
        except (ActionRefused, NotFound) as error:
            err.print(str(error), highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        if as_json:
            print_json(story)
            return
        console.print(f"{turn_id} cancelled; it will not be sent", highlight=False)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


__all__ = ["add_send_commands"]
