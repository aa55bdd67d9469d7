"""What every HTTP answer carries, and what none may carry.

Every answer says `X-Content-Type-Options: nosniff` (a browser must not guess a JSON answer is a
page); JSON answers say `Cache-Control: no-store` (turns, sessions and transcripts must not sit in
a browser's or a proxy's cache); and JSON and event-stream bodies pass through the runtime's
`Redactor`, so no configured secret leaves in an answer whatever stored text it quotes. Plain
ASGI rather than Starlette's BaseHTTPMiddleware, which costs a task and a stream per request.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switchboard.redact import Redactor

NOSNIFF = (b"x-content-type-options", b"nosniff")
NO_STORE = (b"cache-control", b"no-store")
SAFE_HEADERS = (NOSNIFF, NO_STORE)  # for the webhook answers, which are built by hand


class SafeAnswers:
    """Wraps the FastAPI app: the headers above on every answer, secrets out of the bodies."""

    def __init__(self, app: ASGIApp, redact: Redactor) -> None:
        self.app = app
        self.redact = redact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None  # a JSON answer's start, sent once its body is clean
        chunks: list[bytes] = []
        scrub = False

        async def guarded(message: Message) -> None:
            nonlocal held, scrub
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", []))}
                headers = MutableHeaders(raw=message["headers"])
                headers.setdefault("x-content-type-options", "nosniff")
                kind = headers.get("content-type", "")
                # a download is a person's or an agent's file, streamed as it is, not our JSON
                download = headers.get("content-disposition", "").startswith("attachment")
                if kind.startswith("application/json") and not download:
                    headers.setdefault("cache-control", "no-store")
                    held = message
                    return
                scrub = kind.startswith("text/event-stream")  # one event per chunk
                await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            if held is None:
                if scrub:
                    message = {**message, "body": self.redact.data(message.get("body", b""))}
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            raw = b"".join(chunks)
            body = self.redact.data(raw)
            start, held = held, None
            if body != raw:  # (a HEAD answer keeps the length of the GET's body)
                MutableHeaders(raw=start["headers"])["content-length"] = str(len(body))
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, guarded)
