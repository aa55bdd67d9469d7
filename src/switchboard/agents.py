"""Agent handlers: `echo`, `http` (the user's own endpoint) and `openai` (any compatible server)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from channels.errors import RejectedRequest
from channels.payload import storable, storable_text
from switchboard.config import AgentConfig
from switchboard.errors import AgentError
from switchboard.interactions import parse_request
from switchboard.store import AgentResult


@dataclass(frozen=True)
class AgentRequest:
    """Everything a handler gets: the turn, its session, the transcript so far, the model."""

    turn: dict[str, Any]
    session: dict[str, Any]
    transcript: list[dict[str, Any]]
    model: str | None
    on_delta: Callable[[str], Awaitable[None]] | None = field(default=None, compare=False)


Handler = Callable[[AgentRequest], Awaitable[AgentResult]]


async def echo(request: AgentRequest) -> AgentResult:
    """Answers with the user's own words: proves the path end to end without a model."""
    return AgentResult(reply=f"echo: {request.turn['text']}", model=request.model)


echo.wants_transcript = False  # type: ignore[attr-defined]
echo.instant = True  # type: ignore[attr-defined]  # answers at once: no working indicator


def _history(transcript: list[dict[str, Any]]) -> list[dict[str, str]]:
    roles = {"user": "user", "agent": "assistant", "operator": "assistant"}  # the bot said it
    return [{"role": roles[m["role"]], "content": m["text"]} for m in transcript
            if m["role"] in roles]


STREAMED = ("text/event-stream", "application/x-ndjson", "application/ndjson", "application/jsonl",
            "application/x-jsonlines", "application/jsonlines")


def http_handler(agent: AgentConfig, client: httpx.AsyncClient) -> Handler:
    """POSTs the turn to the agent's `url`; expects {"reply", "activity"?, "context"?,
    "interaction"?, "handoff"?} (`reply` may be left out beside an interaction or a handoff,
    whose own `reply` goes first), or a stream of it: NDJSON
    lines (or `text/event-stream` `data:` lines) of {"delta": "…"}, then the final object (its
    `reply` may be left out: the deltas joined are the reply)."""

    async def run(request: AgentRequest) -> AgentResult:
        body = {"turn": request.turn, "session": request.session,
                "transcript": request.transcript, "model": request.model}
        timeout = agent.timeout.total_seconds() if agent.timeout else 30.0
        try:
            async with client.stream("POST", str(agent.url), json=body,
                                     timeout=timeout) as response:
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if response.status_code // 100 == 2 and kind in STREAMED:
                    data = await _streamed_answer(response, request, agent.url)
                else:
                    await response.aread()
                    data = _whole_answer(response, agent.url)
        except httpx.TimeoutException:
            raise AgentError(f"agent at {agent.url} did not answer within {timeout:g}s") from None
        except httpx.HTTPError as error:
            raise AgentError(f"agent at {agent.url} is unreachable: {error!r}") from None
        try:  # valid JSON may still hold text no database stores (a lone surrogate, NUL)
            data = storable(data, f"answer of the agent at {agent.url}")
        except RejectedRequest as error:
            raise AgentError(str(error)) from None
        handoff = parse_handoff(data, agent.url)
        if handoff is not None:  # the agent asks for a person; its words to the person first
            data = {**data, "reply": handoff["reply"]}
        asks = data.get("interaction") if isinstance(data, dict) else None
        if isinstance(data, dict) and asks is not None:  # an interaction may stand alone
            parse_request(asks, f"agent at {agent.url}")
            data = {**data, "reply": data.get("reply") or ""}
        if not isinstance(data, dict) or not isinstance(data.get("reply"), str):
            raise AgentError(f"agent at {agent.url} answered JSON without a string 'reply'")
        activity = data.get("activity") or []
        context = data.get("context")
        files = data.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise AgentError(f"agent at {agent.url} answered 'files' that is not a list of "
                             "objects ({name, type, content_base64} or {name, type, url})")
        return AgentResult(
            reply=data["reply"],
            activity=tuple(a for a in activity if isinstance(a, dict)),
            context=context if isinstance(context, dict) else None,
            model=request.model,
            interaction=asks,
            files=tuple(files),
            handoff={"reason": handoff["reason"]} if handoff is not None else None,
        )

    return run


HANDOFF_REPLY = "I'm handing this conversation to a colleague; someone will reply here soon."


def parse_handoff(data: Any, url: str | None) -> dict[str, str] | None:
    """`{"handoff": {"reason": "…", "reply"?: "…"}}`: the agent asks for a person. The reply
    is the handoff's, else the answer's own, else a plain sentence saying a person comes."""
    if not isinstance(data, dict) or data.get("handoff") is None:
        return None
    handoff = data["handoff"]
    reason = handoff.get("reason") if isinstance(handoff, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        raise AgentError(f"agent at {url} answered a 'handoff' without a 'reason' string "
                         '(write {"handoff": {"reason": "…", "reply": "…"}})')
    reply = handoff.get("reply")
    if reply is not None and not isinstance(reply, str):
        raise AgentError(f"agent at {url} answered a 'handoff' whose 'reply' is not a string")
    top = data.get("reply")
    return {"reason": reason.strip()[:2000],
            "reply": reply or (top if isinstance(top, str) and top else HANDOFF_REPLY)}


def _whole_answer(response: httpx.Response, url: str | None) -> Any:
    if response.status_code // 100 != 2:
        raise AgentError(f"agent at {url} answered HTTP {response.status_code}: "
                         f"{response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        raise AgentError(f"agent at {url} answered something that is not JSON: "
                         f"{response.text[:200]!r}") from None


async def _streamed_answer(response: httpx.Response, request: AgentRequest,
                           url: str | None) -> Any:
    """NDJSON or SSE lines: each {"delta": text} is passed on as it comes; the last object
    without `delta` is the answer."""
    parts: list[str] = []
    final: Any = None
    async for line in response.aiter_lines():
        line = line.strip()
        if line.startswith("data:"):
            line = line[5:].strip()
        elif line.startswith(("event:", "id:", "retry:", ":")):
            continue
        if not line or line == "[DONE]":
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise AgentError(f"agent at {url} streamed a line that is not JSON: "
                             f"{line[:200]!r}") from None
        if isinstance(item, dict) and isinstance(item.get("delta"), str):
            parts.append(item["delta"])
            if request.on_delta:
                await request.on_delta(item["delta"])
        else:
            final = item
    if final is None:
        final = {"reply": "".join(parts)}
    if isinstance(final, dict) and "reply" not in final:
        final = {**final, "reply": "".join(parts)}
    return final


def openai_handler(agent: AgentConfig, client: httpx.AsyncClient) -> Handler:
    """Streams a chat completion from an OpenAI-compatible `/v1/chat/completions`."""

    async def run(request: AgentRequest) -> AgentResult:
        messages: list[dict[str, Any]] = []
        if agent.system_prompt:
            messages.append({"role": "system", "content": agent.system_prompt})
        messages += _history(request.transcript)
        messages.append({"role": "user", "content": await user_content(request.turn, client)})
        base = str(agent.base_url).rstrip("/")
        url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        key = agent.api_key or os.environ.get("OPENAI_API_KEY", "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = agent.timeout.total_seconds() if agent.timeout else 60.0
        body = {"model": request.model or "default", "messages": messages, "stream": True}
        parts: list[str] = []
        try:
            async with client.stream("POST", url, json=body, headers=headers,
                                     timeout=timeout) as response:
                if response.status_code // 100 != 2:
                    text = (await response.aread()).decode(errors="replace")[:200]
                    raise AgentError(f"model server answered HTTP {response.status_code}: {text}")
                async for line in response.aiter_lines():
                    delta = _sse_delta(line)
                    if delta:
                        parts.append(delta)
                        if request.on_delta:
                            await request.on_delta(delta)
        except httpx.TimeoutException:
            raise AgentError(f"model server at {base} did not answer within {timeout:g}s") from None
        except httpx.HTTPError as error:
            raise AgentError(f"model server at {base} is unreachable: {error!r}") from None
        return AgentResult(reply="".join(parts), model=request.model)

    return run


async def user_content(turn: dict[str, Any], client: httpx.AsyncClient) -> Any:
    """The user's message for a chat completion: its text, then its images as image parts
    (data URLs) and small text files inline; what cannot be passed is said in words."""
    files, skipped = turn.get("files") or [], turn.get("files_skipped") or []
    if not files and not skipped:
        return turn["text"]
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn["text"]}]
    notes = [f"{s['name']} was not passed: {s['reason']}" for s in skipped]
    for file in files:
        kind, size = str(file.get("type") or ""), file.get("size") or 0
        inline = (kind.startswith("image/") and size <= INLINE_IMAGE_BYTES) or \
            (_is_text(kind) and size <= INLINE_TEXT_BYTES)
        if not inline:
            notes.append(f"{file['name']} ({kind}, {size} bytes) was not passed: only images "
                         "and small text files can be")
            continue
        try:
            response = await client.get(file["url"], timeout=30)
            response.raise_for_status()
        except httpx.HTTPError as error:
            notes.append(f"{file['name']} was not passed: it could not be read ({error!r})")
            continue
        if kind.startswith("image/"):
            data = base64.b64encode(response.content).decode("ascii")
            parts.append({"type": "image_url",
                          "image_url": {"url": f"data:{kind};base64,{data}"}})
        else:
            text = response.content.decode("utf-8", errors="replace")
            parts.append({"type": "text", "text": f"File {file['name']}:\n{text}"})
    if notes:
        parts.append({"type": "text", "text": "\n".join(notes)})
    return parts


INLINE_IMAGE_BYTES = 5 * 2**20
INLINE_TEXT_BYTES = 64 * 2**10


def _is_text(kind: str) -> bool:
    return kind.startswith("text/") or kind in {"application/json", "application/xml",
                                                "application/x-yaml", "application/csv"}


def _sse_delta(line: str) -> str:
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return ""
    try:
        chunk = json.loads(data)
        return chunk["choices"][0].get("delta", {}).get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def build_handlers(agents: dict[str, AgentConfig], client: httpx.AsyncClient
                   ) -> dict[str, Handler]:
    out: dict[str, Handler] = {}
    for name, agent in agents.items():
        if agent.handler == "http":
            out[name] = http_handler(agent, client)
        elif agent.handler == "openai":
            out[name] = openai_handler(agent, client)
        else:
            out[name] = echo
    return out


async def run_timed(handler: Handler, request: AgentRequest) -> AgentResult:
    """Run a handler and note how long it took."""
    started = time.perf_counter()
    result = await handler(request)
    elapsed = int((time.perf_counter() - started) * 1000)
    return AgentResult(reply=storable_text(result.reply), activity=result.activity,
                       context=result.context, duration_ms=elapsed, model=result.model,
                       files=result.files, interaction=result.interaction,
                       handoff=result.handoff)
