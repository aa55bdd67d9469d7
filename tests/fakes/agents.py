"""A local HTTP agent and a fake OpenAI-compatible model server, for agent handler tests."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from aiohttp import web


class _ThreadedServer:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Any:
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            self.routes(app)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.create_task(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class HTTPAgent(_ThreadedServer):
    """Answers POST /turn with a scripted reply; `mode` switches to failures."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"  # ok | error | not_json | stall | raw | ndjson | sse
        self.raw_answer = b""  # mode raw: these bytes as the JSON answer, as they are
        self.delay = 0.0  # seconds each answer takes (a slow agent)
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests it was answering at once
        self.parts = ["Hello", " from", " a", " streaming", " agent"]  # ndjson | sse deltas
        self.stream_delay = 0.02  # seconds between streamed deltas
        self.stream_type: str | None = None  # ndjson | sse: another Content-Type than theirs

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/turn", self._turn)

    async def _turn(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.mode == "error":
            return web.Response(status=502, text="upstream exploded")
        if self.mode == "not_json":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        if self.mode == "stall":
            await asyncio.sleep(5)
        if self.delay:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.in_flight -= 1
        if self.mode == "raw":
            return web.Response(body=self.raw_answer, content_type="application/json")
        if self.mode in ("ndjson", "sse"):
            return await self._stream(request)
        turns_seen = int(body["session"]["context"].get("turns", 0)) + 1
        return web.json_response({
            "reply": f"agent says: {body['turn']['text']} (model {body['model']})",
            "activity": [
                {"type": "reasoning", "text": "thinking about it"},
                {"type": "tool_call", "name": "lookup", "arguments": {"q": body["turn"]["text"]},
                 "status": "ok", "duration_ms": 12},
            ],
            "context": {"turns": turns_seen},
        })

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """The deltas as NDJSON lines ({"delta": …}) or SSE `data:` lines, then the final
        object (its reply is the deltas joined, its context counts turns)."""
        sse = self.mode == "sse"
        kind = self.stream_type or ("text/event-stream" if sse else "application/x-ndjson")
        response = web.StreamResponse(headers={"Content-Type": kind})
        await response.prepare(request)
        for part in self.parts:
            line = json.dumps({"delta": part})
            await response.write((f"data: {line}\n\n" if sse else line + "\n").encode())
            await asyncio.sleep(self.stream_delay)
        final = json.dumps({"reply": "".join(self.parts), "context": {"streamed": True}})
        await response.write((f"data: {final}\n\n" if sse else final + "\n").encode())
        await response.write_eof()
        return response


class FakeOpenAI(_ThreadedServer):
    """`/v1/chat/completions` that streams its answer as server-sent chunks, one word each
    `delay` seconds (`tokens`: split the answer into these instead); `break_after` tokens,
    the connection is cut (a model server dying mid-answer)."""

    def __init__(self, answer: str = "Hello from the model", delay: float = 0.01) -> None:
        super().__init__()
        self.answer = answer
        self.delay = delay
        self.tokens: list[str] | None = None
        self.break_after: int | None = None
        self.finished: dict[str, float] = {}  # the user's text -> when its last token went

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._complete)

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append({"body": body, "auth": request.headers.get("Authorization")})
        if not body.get("stream"):
            return web.json_response({"choices": [{"message": {"role": "assistant",
                                                               "content": self.answer}}]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        tokens = self.tokens or [word + " " for word in self.answer.split(" ")]
        for index, token in enumerate(tokens):
            if self.break_after is not None and index >= self.break_after:
                assert request.transport is not None
                request.transport.close()
                return response
            chunk = {"choices": [{"index": 0, "delta": {"content": token}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(self.delay)
        self.finished[str(body["messages"][-1].get("content"))] = time.time()  # last token
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


class ScriptedAgent(_ThreadedServer):
    """An http agent whose answer is `script(request_body)`: an interaction, a reply..."""

    def __init__(self, script: Any = None) -> None:
        super().__init__()
        self.script = script or (lambda body: {"reply": f"ok: {body['turn']['text']}"})

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/turn", self._turn)

    async def _turn(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        return web.json_response(self.script(body))


def asks_approval(prompt: str = "May I refund order 1182?", **more: Any) -> Any:
    """A script: asks an approval for the first message, and says what it got for the answer."""
    def script(body: dict[str, Any]) -> dict[str, Any]:
        answer = body["turn"].get("interaction")
        if answer is None:
            return {"reply": "Let me check.", "interaction": {"kind": "approval",
                                                              "prompt": prompt, **more}}
        if answer.get("expired"):
            return {"reply": "No answer came; I did not refund."}
        return {"reply": f"Decision: {answer.get('option') or answer.get('text')}"}
    return script
class FileAgent(_ThreadedServer):
    """An http agent that downloads every file of the turn through its signed `url` (as an
    agent would) and answers with the files in `answer_files` (the agent-side JSON)."""

    def __init__(self) -> None:
        super().__init__()
        self.downloads: dict[str, bytes] = {}  # file name -> bytes fetched by its url
        self.statuses: dict[str, int] = {}
        self.answer_files: list[dict[str, Any]] = []
        self.extra: dict[str, bytes] = {}  # path -> bytes served at GET /blob/<path>

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/turn", self._turn)
        app.router.add_get("/blob/{name}", self._blob)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        data = self.extra.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _turn(self, request: web.Request) -> web.StreamResponse:
        import aiohttp

        body = await request.json()
        self.requests.append(body)
        async with aiohttp.ClientSession() as session:
            for file in body["turn"].get("files", []):
                async with session.get(file["url"]) as response:
                    self.statuses[file["name"]] = response.status
                    self.downloads[file["name"]] = await response.read()
        return web.json_response({"reply": f"got {len(self.downloads)} files",
                                  "files": self.answer_files})
