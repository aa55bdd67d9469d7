"""Session actions for operators (API, CLI) and for the person in the chat (`/new`, `/end`,
`/pause`, `/resume`, `/agents`, `/transfer NAME`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from sessions import ActionRefused, SessionNotFound, StateChange, TransitionRefused
from sessions.events import EventHub
from switchboard.store import SessionRecord, Store

__all__ = ["CHAT_COMMANDS", "ActionRefused", "SessionControls", "SessionNotFound"]

CHAT_COMMANDS = ("new", "end", "pause", "resume", "agents", "transfer")
"""What the person in the chat may do to their own session (`SessionControls.user_command`)."""


class AgentRules(Protocol):
    """What the controls need to know of an agent (config's `agents.NAME`)."""

    @property
    def allow_model_override(self) -> bool: ...


class SessionControls:
    """Each action checks the state table, records who did it, and announces the change: on
    this process's live events, and through the database to every running `serve`."""

    def __init__(self, store: Store, events: EventHub, *, origin: str,
                 agents: Mapping[str, AgentRules],
                 on_resumed: Callable[[str], None] | None = None, audited: bool = False,
                 forget_blobs: Callable[[set[str]], Awaitable[None]] | None = None) -> None:
        """`origin` names this process in shared events; `on_resumed(session_id)` answers
        the turns held while it was paused (without it, a running `serve`'s sweep does).
        `audited`: write the operator actions into the audit log here (the CLI's; the API's
        are written by `switchboard.audit`, for every route at once). `forget_blobs` removes
        file blobs a deleted session alone referenced."""
        self.audited = audited
        self.store = store
        self.events = events
        self.origin = origin
        self.agents = agents
        self.on_resumed = on_resumed
        self.forget_blobs = forget_blobs

    async def announce(self, name: str, data: dict[str, Any]) -> None:
        """On this process's live events, and shared with the other processes."""
        self.events.publish(name, data)
        if self.events.relay is None:  # a relayed hub shares what it publishes (feed.py)
            await self.store.live.share(self.origin, name, data)

    async def _move(self, session_id: str, target: str, cause: str, actor: str,
                    transfer_to: str | None = None) -> StateChange | None:
        moved = await self.store.sessions.change_state(session_id, target, cause=cause,
                                                       actor=actor, transfer_to=transfer_to)
        if moved:
            await self.announce("session.state_changed", moved.event())
        return moved

    async def _audit(self, actor: str, action: str, session_id: str,
                     detail: dict[str, Any] | None = None) -> None:
        if self.audited:
            await self.store.audit.record(actor, action, session_id, detail)

    async def pause(self, session_id: str, actor: str) -> str:
        await self._move(session_id, "paused", "operator", actor)
        await self._audit(actor, "pause", session_id)
        return f"session {session_id} is paused; new turns are held until it is resumed"

    async def resume(self, session_id: str, actor: str) -> str:
        row = await self.store.sessions.get(session_id)
        if row is not None and row.state == "paused" and (row.taken_over_by
                                                         or row.handoff_reason):
            raise ActionRefused(f"session {session_id} is paused for people ({for_people(row)}); "
                                "hand it back to its agent instead (POST …/handback)")
        await self._move(session_id, "live", "operator", actor)
        await self._audit(actor, "resume", session_id)
        if self.on_resumed is not None:
            self.on_resumed(session_id)
        return f"session {session_id} is live again; held turns are being answered"

    async def end(self, session_id: str, actor: str, cause: str = "operator") -> str:
        moved = await self._move(session_id, "ended", cause, actor)
        await self._audit(actor, "end", session_id)
        if moved is None:
            return f"session {session_id} was already ended; nothing changed"
        return f"session {session_id} is ended"

    async def transfer(self, session_id: str, agent: str, actor: str) -> str:
        if agent not in self.agents:
            raise ActionRefused(f"no agent named {agent!r}; agents are: "
                                f"{', '.join(self.agents)}")
        row = await self.store.sessions.get(session_id)
        if row is None:
            raise SessionNotFound(f"no session {session_id}")
        if row.agent == agent:
            raise ActionRefused(f"session {session_id} already belongs to agent {agent}")
        if row.state == "ended":
            raise ActionRefused(f"session {session_id} is ended; only an open session can be "
                                "transferred")
        await self._move(session_id, "ended", "transferred", actor, transfer_to=agent)
        await self._audit(actor, "transfer", session_id, {"to": agent})
        return (f"session {session_id} is transferred to {agent}; the next message in its "
                "conversation opens a session of that agent")

    async def delete(self, session_id: str, actor: str) -> str:
        await self.store.sessions.delete(session_id, actor)
        unreferenced = await self.store.files.forget_session(session_id)
        if self.forget_blobs is not None:
            await self.forget_blobs(unreferenced)
        await self.announce("session.deleted", {"session_id": session_id, "actor": actor})
        return f"session {session_id} is deleted (recorded in the audit log)"

    async def set_model(self, session_id: str, model: str | None, actor: str) -> str:
        row = await self.store.sessions.get(session_id)
        if row is None:
            raise SessionNotFound(f"no session {session_id}")
        agent = self.agents.get(row.agent)
        if agent is not None and not agent.allow_model_override:
            raise ActionRefused(f"agent {row.agent} does not allow a per-session model "
                                "(allow_model_override: false)")
        await self.store.sessions.set_model(session_id, model, actor)
        return f"session {session_id} now uses model {model or 'the default route'}"

    async def user_command(self, command: str, *, agent: str, scope: str, user: str,
                           prefix: bool = False, args: str = "",
                           transfer_to: Sequence[str] = (), invoked_as: str = "/") -> str:
        """A chat command from the person who owns the session: `/end`, `/new` (end it so the
        next message starts fresh), `/pause`, `/resume`, `/agents` (where it may move) and
        `/transfer NAME` (to one of the binding's `transfer_to`). Every move is recorded
        with the person as its actor. Returns the answer to show them."""
        if command == "agents":
            return _agents_answer(agent, [a for a in transfer_to if a != agent], invoked_as)
        try:
            return await self._user_move(command, agent=agent, scope=scope, user=user,
                                         prefix=prefix, args=args, transfer_to=transfer_to,
                                         invoked_as=invoked_as)
        except (SessionNotFound, TransitionRefused) as error:  # it moved meanwhile
            return f"That did not work: {error}."

    async def _user_move(self, command: str, *, agent: str, scope: str, user: str,
                         prefix: bool, args: str, transfer_to: Sequence[str],
                         invoked_as: str) -> str:
        row = await self.store.sessions.find_open(agent, scope, user=user if prefix else None,
                                                  prefix=prefix)
        if row is None:
            if command == "new":
                return "Your next message starts a new conversation."
            return f"There is no open conversation to {command}."
        if row.user_id and row.user_id != user:
            return f"Only the person who started this conversation can {command} it."
        if command == "pause":
            if row.state == "paused":
                return f"This conversation is already paused; {invoked_as}resume continues it."
            await self._move(row.id, "paused", "user", user)
            return f"Paused: your messages are kept, and answered after {invoked_as}resume."
        if command == "resume":
            if row.state != "paused":
                return "This conversation is not paused."
            if row.taken_over_by or row.handoff_reason:
                return "A person is handling this conversation; they will hand it back."
            await self._move(row.id, "live", "user", user)
            if self.on_resumed is not None:
                self.on_resumed(row.id)
            return "Resumed: what you sent while it was paused is being answered."
        if command == "transfer":
            return await self._user_transfer(row.id, row.agent, args.strip(), user,
                                             transfer_to, invoked_as)
        await self._move(row.id, "ended", "user", user)
        if command == "new":
            return "Started fresh: your next message begins a new conversation."
        return "This conversation has ended. Send a message to start a new one."

    async def _user_transfer(self, session_id: str, current: str, target: str, user: str,
                             transfer_to: Sequence[str], invoked_as: str) -> str:
        allowed = [name for name in transfer_to if name in self.agents]
        if not allowed:
            return "This conversation cannot be moved to another agent here."
        if target not in allowed:
            return (f"Usage: {invoked_as}transfer NAME, where NAME is one of: "
                    f"{', '.join(allowed)}")
        if target == current:
            return f"You are already talking to {target}."
        await self._move(session_id, "ended", "transferred", user, transfer_to=target)
        return f"Transferred to {target}: your next message goes to {target}."


def _agents_answer(agent: str, transfer_to: Sequence[str], invoked_as: str) -> str:
    if not transfer_to:
        return f"You are talking to {agent}; this conversation cannot be moved to another " \
               "agent here."
    return (f"You are talking to {agent}. It can be moved to: {', '.join(transfer_to)} "
            f"(send {invoked_as}transfer NAME).")


def for_people(row: SessionRecord) -> str:
    """Why a session is paused for people, in words."""
    if row.taken_over_by:
        return f"taken over by {row.taken_over_by}"
    return f"its agent asked for a person: {row.handoff_reason}"
