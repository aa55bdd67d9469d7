"""The rules of interactions, as plain functions: what an agent may ask (`parse_request`), who
may answer (`judge`), which option a reply names (`resolve`), what the agent is handed
(`answer_view`, `expiry_view`), and the words and data people and operators see of a decision.
`switchboard.interactions` does the I/O around them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from channels.units import parse_duration
from switchboard.errors import AgentError
from switchboard.store import iso
from switchboard.store.interactions import Attempt, Decided, InteractionRecord

KINDS = ("approval", "choice", "input")
APPROVAL_OPTIONS = ({"id": "approve", "label": "Approve"}, {"id": "reject", "label": "Reject"})
CONSOLE = "console"
PAST = {"approve": "Approved", "reject": "Rejected"}


@dataclass(frozen=True)
class Request:
    """An interaction as an agent asked for it (validated)."""

    kind: str
    prompt: str
    options: tuple[dict[str, str], ...]
    responders: tuple[str, ...] | None
    expires_in: timedelta | None


def parse_request(data: Any, where: str) -> Request:
    """The agent's `interaction` object, checked; AgentError saying what is wrong with it."""
    def bad(problem: str) -> AgentError:
        return AgentError(f"{where} answered an interaction that cannot be asked: {problem}")

    if not isinstance(data, dict):
        raise bad("'interaction' must be an object")
    kind = data.get("kind")
    if kind not in KINDS:
        raise bad(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise bad("'prompt' must be a non-empty string")
    raw = data.get("options")
    if raw is None:
        options = APPROVAL_OPTIONS if kind == "approval" else ()
    elif not isinstance(raw, list) or not all(
            isinstance(o, dict) and isinstance(o.get("id"), str) and o["id"]
            and isinstance(o.get("label", o["id"]), str) for o in raw):
        raise bad("'options' must be a list of {\"id\": …, \"label\": …}")
    else:
        options = tuple({"id": o["id"][:64], "label": str(o.get("label") or o["id"])[:200]}
                        for o in raw)
    if kind == "choice" and not options:
        raise bad("a choice needs options")
    if kind == "input":
        options = ()
    if len({o["id"] for o in options}) != len(options) or len(options) > 20:
        raise bad("options need distinct ids, at most 20 of them")
    responders = data.get("responders")
    if responders is not None and (not isinstance(responders, list)
                                   or not all(isinstance(r, str) and r for r in responders)):
        raise bad("'responders' must be a list of user ids")
    try:
        expires_in = parse_duration(data.get("expires_in"))
    except ValueError as error:
        raise bad(f"expires_in: {error}") from None
    return Request(kind, prompt.strip(), options,
                   tuple(responders) if responders is not None else None, expires_in)


def resolve(choice: str, options: list[dict[str, Any]]) -> str | None:
    """The option a choice names: its id, its number (`1`) or its label, in any case."""
    choice = choice.strip().rstrip(".").strip()
    for option in options:
        if option["id"] == choice:
            return str(option["id"])
    if choice.isdigit() and 1 <= int(choice) <= len(options):
        return str(options[int(choice) - 1]["id"])
    folded = choice.casefold()
    for option in options:
        if str(option["label"]).casefold() == folded or str(option["id"]).casefold() == folded:
            return str(option["id"])
    return None


def may_answer(record: InteractionRecord, by_id: str) -> bool:
    return by_id.casefold() in {r.casefold() for r in record.responders}


def judge(record: InteractionRecord, attempt: Attempt) -> str | None:
    """Why this attempt may not answer the (pending) interaction, or None."""
    if attempt.by_provider is not None and not may_answer(record, attempt.by_id):
        return f"only {', '.join(record.responders) or 'an operator'} can answer this"
    if record.kind == "input":
        return None if attempt.text and attempt.text.strip() else "the answer needs some text"
    if attempt.option is None or resolve(attempt.option, record.options) is None:
        labels = ", ".join(f"{n}. {o['label']}" for n, o in enumerate(record.options, 1))
        return f"{attempt.option!r} is not one of the options ({labels})"
    return None


def answer_view(attempt: Attempt) -> Callable[[InteractionRecord, datetime], dict[str, Any]]:
    """What the agent gets in `turn.interaction` for an accepted attempt."""
    def view(record: InteractionRecord, at: datetime) -> dict[str, Any]:
        out: dict[str, Any] = {"id": record.id, "kind": record.kind}
        if record.kind == "input":
            out["text"] = (attempt.text or "").strip()
        else:
            out["option"] = resolve(attempt.option or "", record.options)
        out["by"] = ({"operator": attempt.by_name} if attempt.by_provider is None
                     else {"provider": attempt.by_provider, "id": attempt.by_id,
                           "name": attempt.by_name})
        out["via"] = attempt.via
        out["at"] = iso(at)
        return out
    return view


def expiry_view(record: InteractionRecord, at: datetime) -> dict[str, Any]:
    return {"id": record.id, "kind": record.kind, "expired": True, "at": iso(at)}


def who(view: Mapping[str, Any]) -> str:
    by = view.get("by") or {}
    name = by.get("operator") or by.get("name") or by.get("id") or "someone"
    return f"@{name}"


def decision_text(record: InteractionRecord, view: Mapping[str, Any]) -> str:
    """The decision in words, as it replaces the buttons: "Approved by @ann at 14:02"."""
    at = str(view.get("at") or "")[11:16]
    if view.get("expired"):
        return f"Expired at {at} without an answer"
    if record.kind == "input":
        return f"Answered by {who(view)} at {at}: {view.get('text')}"
    option = str(view.get("option"))
    label = next((o["label"] for o in record.options if o["id"] == option), option)
    if record.kind == "approval":
        return f"{PAST.get(option, label)} by {who(view)} at {at}"
    return f"{label}, chosen by {who(view)} at {at}"


def refusal_text(decided: Decided) -> str:
    record = decided.interaction
    if record.state == "answered" and record.answer:
        return f"already answered by {who(record.answer)}"
    if record.state == "expired":
        return "this request has expired"
    return decided.reason or "this answer was not taken"


def interaction_json(record: InteractionRecord) -> dict[str, Any]:
    return {"id": record.id, "state": record.state, "kind": record.kind,
            "prompt": record.prompt, "options": record.options,
            "responders": record.responders, "agent": record.agent,
            "session_id": record.session_id, "turn_id": record.turn_id,
            "provider": record.provider, "account": record.account,
            "conversation": record.conversation, "thread": record.thread,
            "created_at": iso(record.created_at), "expires_at": iso(record.expires_at),
            "closed_at": iso(record.closed_at), "answer": record.answer,
            "answer_turn_id": record.answer_turn_id}


def decided_event(record: InteractionRecord) -> tuple[str, dict[str, Any]]:
    """The live event of a decided interaction (`interaction.answered` or `.expired`)."""
    name = "interaction.expired" if record.state == "expired" else "interaction.answered"
    return name, {"interaction_id": record.id, "session_id": record.session_id,
                  "turn_id": record.turn_id, "answer_turn_id": record.answer_turn_id,
                  "agent": record.agent, "answer": record.answer}


__all__ = ["APPROVAL_OPTIONS", "CONSOLE", "KINDS", "PAST", "Request", "answer_view",
           "decided_event", "decision_text", "expiry_view", "interaction_json", "judge",
           "may_answer", "parse_request", "refusal_text", "resolve", "who"]
