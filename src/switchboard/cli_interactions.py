"""`switchboard interactions list|show ID|answer ID OPTION_OR_TEXT`: what agents asked people,
and an answer given from the terminal (as the operator `cli`). The answer's turn is written in
the database; a running `serve` takes it up (as it recovers any turn nobody works on) and hands
it to the agent."""

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from switchboard.api_interactions import interaction_story
from switchboard.cli_common import print_table, table, when
from switchboard.errors import ActionRefused, NotFound
from switchboard.interactions import interaction_json, offline_answer
from switchboard.store import Store

WithStore = Callable[[Callable[[Store], Awaitable[Any]]], Any]
CLI = "cli"


def add_interaction_commands(app: typer.Typer, with_store: WithStore, out: Console,
                             err: Console) -> None:
    group = typer.Typer(help="Interactions: approvals, choices and questions agents asked.",
                        no_args_is_help=True)
    app.add_typer(group, name="interactions")
    json_option = Annotated[bool, typer.Option("--json", help="Machine-readable output")]

    def refused(error: Exception) -> typer.Exit:
        err.print(str(error), highlight=False, soft_wrap=True)
        return typer.Exit(1)

    def emit(data: Any) -> None:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")

    @group.command("list")
    def list_(
        state: Annotated[str | None, typer.Option(help="pending | answered | expired")] = None,
        agent: Annotated[str | None, typer.Option(help="Only this agent's")] = None,
        as_json: json_option = False,
    ) -> None:
        """Interactions, pending ones oldest first."""
        if state is not None and state not in ("pending", "answered", "expired"):
            raise refused(ValueError(f"unknown state {state!r}: pending, answered or expired"))

        async def work(store: Store) -> list[dict[str, Any]]:
            rows = await store.interactions.listing(state=state,
                                                    agents=[agent] if agent else None)
            return [interaction_json(r) for r in rows]

        rows = with_store(work)
        if as_json:
            emit({"interactions": rows})
            return
        listed = table("id", "state", "kind", "agent", "since", "prompt",
                       whole=("state", "since"))
        for row in rows:
            listed.add_row(row["id"], row["state"], row["kind"], row["agent"],
                           when(row["created_at"]), row["prompt"][:60])
        print_table(listed, "no interactions match" if state or agent else "no interactions")

    @group.command("show")
    def show(interaction_id: str, as_json: json_option = False) -> None:
        """One interaction with every answer attempt."""
        async def work(store: Store) -> dict[str, Any]:
            record = await store.interactions.get(interaction_id)
            if record is None:
                raise NotFound(f"no interaction {interaction_id}")
            return await interaction_story(store, record)

        try:
            story = with_store(work)
        except NotFound as error:
            raise refused(error) from None
        if as_json:
            emit(story)
            return
        out.print(f"{story['id']}  {story['state']}  {story['kind']}  agent {story['agent']}  "
                  f"session {story['session_id']}", highlight=False, soft_wrap=True)
        out.print(story["prompt"], highlight=False, soft_wrap=True)
        for n, option in enumerate(story["options"], 1):
            out.print(f"  {n}. {option['label']} ({option['id']})", highlight=False)
        out.print(f"may answer: {', '.join(story['responders']) or 'operators'}",
                  highlight=False)
        for attempt in story["attempts"]:
            by = attempt["by"].get("operator") or attempt["by"].get("name")
            verdict = "accepted" if attempt["accepted"] else f"refused: {attempt['reason']}"
            out.print(f"  {attempt['at']}  {attempt['via']}  {by}  "
                      f"{attempt['option'] or attempt['text']}  {verdict}", highlight=False,
                      soft_wrap=True)

    @group.command("answer")
    def answer(interaction_id: str, option_or_text: str, as_json: json_option = False) -> None:
        """Answer as the operator `cli`: an option's id, number or label, or an input's text."""
        async def work(store: Store) -> dict[str, Any]:
            decided = await offline_answer(store, interaction_id, CLI, option_or_text)
            return await interaction_story(store, decided.interaction)

        try:
            story = with_store(work)
        except (NotFound, ActionRefused) as error:
            raise refused(error) from None
        if as_json:
            emit(story)
            return
        given = story["answer"].get("option") or story["answer"].get("text")
        out.print(f"{interaction_id} answered: {given}", highlight=False, soft_wrap=True)


__all__ = ["add_interaction_commands"]
