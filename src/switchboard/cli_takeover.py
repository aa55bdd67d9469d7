"""`switchboard sessions takeover|reply|handback ID`: human takeover from the terminal, by the
same code as the API's (takeover.py). The CLI runs no provider: a reply is written to the
outbox, where the agent's last reply in the session went, and a running `serve` delivers it;
after a hand-back with `--replay-missed`, a running `serve` gives the agent what it missed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from switchboard.cli_common import ConfigOption, JsonOption, console, err, print_json, target
from switchboard.cli_common import with_store as run_with_store

if TYPE_CHECKING:
    from switchboard.store import Store
    from switchboard.takeover import Takeovers

SessionId = Annotated[str, typer.Argument(help="A session id (ses_…)")]
Who = Annotated[str, typer.Option("--as", help="The operator name the transcript shows")]


def _run(config: str | None, work: Callable[[Takeovers], Awaitable[Any]]) -> Any:
    from sessions import SessionError
    from sessions.events import EventHub
    from switchboard.controls import SessionControls
    from switchboard.models import new_id
    from switchboard.takeover import Takeovers

    where = target(config)
    agents = where.config.agents if where.config else {}

    async def go(store: Store) -> Any:
        controls = SessionControls(store, EventHub(), origin=new_id("cli"), agents=agents,
                                   audited=True)
        return await work(Takeovers(store, controls, None, None))

    try:
        return run_with_store(where, go)
    except SessionError as error:
        err.print(str(error), highlight=False)
        raise typer.Exit(1) from None


def add_takeover_commands(sessions: typer.Typer) -> None:
    """`takeover`, `reply` and `handback` under `switchboard sessions`."""

    @sessions.command("takeover")
    def takeover(session_id: SessionId, who: Who = "cli", config: ConfigOption = None) -> None:
        """Pause the agent for the session: its person's messages wait for an operator."""
        console.print(_run(config, lambda t: t.take_over(session_id, who)), highlight=False)

    @sessions.command("reply")
    def reply(session_id: SessionId,
              text: Annotated[str, typer.Argument(help="What the person receives")],
              who: Who = "cli", config: ConfigOption = None, as_json: JsonOption = False
              ) -> None:
        """Send a message into the session's conversation as the bot (a running serve
        delivers it)."""
        sent = _run(config, lambda t: t.reply(session_id, who, text))
        if as_json:
            print_json(sent)
            return
        console.print(f"reply {sent['turn_id']} is in the outbox of session {session_id}; "
                      "a running serve delivers it", highlight=False)

    @sessions.command("handback")
    def handback(session_id: SessionId,
                 replay_missed: Annotated[bool, typer.Option(
                     "--replay-missed", help="Ask the agent now about what it missed")] = False,
                 who: Who = "cli", config: ConfigOption = None) -> None:
        """Give the session back to its agent."""
        console.print(_run(config, lambda t: t.hand_back(session_id, who, replay_missed)),
                      highlight=False)


__all__ = ["add_takeover_commands"]
