"""A fake Webchat API on 127.0.0.1 (the example provider's service): posts are recorded, and
scripted failures answered with Webchat's own error shape."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class FakeWebchatAPI:
    """`POST /api/rooms/{room}/messages`, served by aiohttp on a loop in its own thread."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.failures: list[tuple[int, str]] = []  # (status, error) for the next posts
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    async def _post(self, request: web.Request) -> web.Response:
        if self.failures:
            status, error = self.failures.pop(0)
            return web.json_response({"error": error}, status=status)
        body = await request.json()
        self.posts.append({**body, "room": request.match_info["room"],
                           "auth": request.headers.get("Authorization", "")})
        return web.json_response({"id": f"m{len(self.posts)}"}, status=201)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/rooms/{room}/messages", self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def __enter__(self) -> FakeWebchatAPI:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
