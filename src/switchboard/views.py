"""The store's records as JSON, one function per kind: the one place the shapes of the operator
API, the CLI's `--json` and the agent handlers' request body are made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from channels.adapter import Provider, capability_names
from switchboard.config import Config
from switchboard.current_config import CurrentConfig
from switchboard.store import (
    AccountHealth,
    AuditRecord,
    Inbox,
    SessionRecord,
    Store,
    TranscriptEntry,
    TurnRecord,
    TurnStory,
    iso,
)


def turn_json(turn: TurnRecord) -> dict[str, Any]:
    """A turn as the API and `--json` show it."""
    return {
        "id": turn.id, "provider": turn.provider, "account": turn.account,
        "event_id": turn.event_id, "conversation": turn.conversation, "kind": turn.kind,
        "thread": turn.thread, "message_id": turn.message_id, "sender": turn.sender,
        "sender_name": turn.sender_name, "text": turn.text,
        "received_at": iso(turn.received_at), "status": turn.status,
        "route_reason": turn.route_reason, "binding": turn.binding, "agent": turn.agent,
        "session_id": turn.session_id, "reply_text": turn.reply_text,
        "delivery_status": turn.delivery_status, "delivery_attempts": turn.delivery_attempts,
        "provider_message_id": turn.provider_message_id, "error": turn.error,
        "duplicate_of": turn.duplicate_of, "agent_ms": turn.agent_ms,
        "delivered_at": iso(turn.delivered_at),
        "agent_text": (turn.extra or {}).get("agent_text"),  # what the agent read, if not text
    }


def turn_story_json(story: TurnStory) -> dict[str, Any]:
    """One turn with its timeline and the provider's payload (`GET /api/turns/{id}`)."""
    return {**turn_json(story.turn),
            "events": [{"at": iso(e.at), "name": e.name,
                        **({"detail": e.detail} if e.detail else {})} for e in story.events],
            "payload": story.turn.payload}


def session_json(session: SessionRecord) -> dict[str, Any]:
    """A session as the API, `--json` and agent handlers see it."""
    return {
        "id": session.id, "agent": session.agent, "state": session.state,
        "source": session.source, "tag": session.tag, "account": session.account,
        "provider": session.provider, "binding": session.binding,
        "scope_key": session.scope_key, "user_id": session.user_id,
        "user_name": session.user_name, "started_at": iso(session.started_at),
        "last_activity_at": iso(session.last_activity_at), "ended_at": iso(session.ended_at),
        "end_cause": session.end_cause, "parent_session_id": session.parent_session_id,
        "transferred_to": session.transferred_to, "model_override": session.model_override,
        "turn_count": session.turn_count, "context": session.context,
        "taken_over_by": session.taken_over_by,  # paused for people (takeover.py)
        "handoff": {"reason": session.handoff_reason, "at": iso(session.handoff_at)}
        if session.handoff_reason else None,
    }


def transcript_json(entries: Iterable[TranscriptEntry],
                    undelivered: Mapping[str, dict[str, Any]] | None = None
                    ) -> list[dict[str, Any]]:
    """The transcript; an agent's reply that never reached the person is marked `delivery`
    (failed with the provider's words, pending, retrying), from `store.turns.undelivered`."""
    marks = undelivered or {}
    return [{"id": m.id, "at": iso(m.at), "role": m.role, "text": m.text,
             "turn_id": m.turn_id, **({"data": m.data} if m.data else {}),
             **({"delivery": marks[m.turn_id]}
                if m.role in ("agent", "operator") and m.turn_id in marks else {})}
            for m in entries]


def inbox_json(inbox: Inbox) -> dict[str, Any]:
    """An inbox as the API and `--json` show it."""
    return {"email_address": inbox.address, "agent": inbox.agent, "account": inbox.account,
            "created_at": iso(inbox.created_at), "revoked_at": iso(inbox.revoked_at),
            "active": inbox.active}


def audit_json(entries: Iterable[AuditRecord]) -> list[dict[str, Any]]:
    return [{"at": iso(r.at), "actor": r.actor, "action": r.action, "target": r.target,
             "detail": r.detail} for r in entries]


def account_rows(config: Config, errors: Mapping[str, str], health: Mapping[str, AccountHealth],
                 providers: Mapping[str, Provider] | None = None,
                 adapters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each configured account with its health (and its provider's capabilities, when the
    registry is given; and what a running adapter says of its connection, `connected` …,
    when it has a `health()`), for the API and `switchboard accounts`."""
    rows = []
    for name, settings in config.accounts.items():
        seen = health.get(name) or AccountHealth(name)
        disabled = config.disabled.get(name)
        error = errors.get(name)
        provider = providers.get(settings.provider) if providers is not None else None
        rows.append({
            "name": name, "provider": settings.provider, "enabled": disabled is None,
            "disabled_reason": disabled,
            "status": "disabled" if disabled else ("failing" if error else "connected"),
            "error": error,
            "last_inbound_at": iso(seen.last_inbound_at),
            "last_outbound_at": iso(seen.last_outbound_at),
            "last_error": seen.last_error, "last_error_at": iso(seen.last_error_at),
            "rejected": dict(seen.rejected),
            **({"capabilities": capability_names(provider.capabilities)} if provider else {}),
            **_live(adapters, name),
        })
    return rows


def _live(adapters: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """What a running adapter says of its own connection (a mailbox read over IMAP)."""
    adapter = (adapters or {}).get(name)
    said = getattr(adapter, "health", None)
    return dict(said()) if callable(said) else {}


class AccountHealthSource(Protocol):
    async def health(self) -> Mapping[str, AccountHealth]: ...


class AccountList:
    """The accounts with their health, as the API, the console and the CLI list them: what a
    router needs of the running accounts, without the runtime (`adapters`: the running ones,
    for what they say of their own connection)."""

    def __init__(self, config: CurrentConfig, errors: Mapping[str, str],
                 health: AccountHealthSource,
                 providers: Mapping[str, Provider],
                 adapters: Mapping[str, Any] | None = None) -> None:
        self._config, self._errors, self._health = config, errors, health
        self._providers, self._adapters = providers, adapters

    async def rows(self) -> list[dict[str, Any]]:
        return account_rows(self._config(), self._errors, await self._health.health(),
                            self._providers, self._adapters)


def provider_rows(providers: Mapping[str, Provider]) -> list[dict[str, Any]]:
    """The providers this process speaks (and `api`, sessions opened through this API), for
    the console's filters: name, capabilities and webhook actions."""
    rows = [{"name": p.name, "description": p.description,
             "capabilities": capability_names(p.capabilities),
             "webhook_actions": list(p.webhook_actions)} for p in providers.values()]
    return [*rows, {"name": "api", "description": "sessions opened through the operator API",
                    "capabilities": [], "webhook_actions": []}]


async def marked_transcript(store: Store, session_id: str) -> list[dict[str, Any]]:
    """A session's whole transcript as the API and the CLI show it, undelivered replies
    marked."""
    entries = await store.sessions.transcript(session_id)
    agent_turns = [e.turn_id for e in entries
                   if e.role in ("agent", "operator") and e.turn_id]
    return transcript_json(entries, await store.turns.undelivered(agent_turns))
