"""A minimal fake Slack Web API for benchmarks, meant to run in its own process.

Answers `auth.test` (user UBOT, bot BBOT) and `chat.postMessage` ({"ok": true, "ts": ...}) and
counts replies. `GET /count` gives the counters as JSON; `POST /reset` zeroes them.

    python bench/fake_slack.py --port 0 --port-file /tmp/fake.port
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web


class Counters:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.posts = 0
        self.auth_calls = 0
        self.other_calls = 0
        self.first_post: float | None = None
        self.last_post: float | None = None
        self.threads: set[tuple[str, str]] = set()

    def as_dict(self) -> dict[str, Any]:
        return {"posts": self.posts, "distinct_threads": len(self.threads),
                "auth_calls": self.auth_calls, "other_calls": self.other_calls,
                "first_post": self.first_post, "last_post": self.last_post, "now": time.time()}


async def _params(request: web.Request) -> dict[str, Any]:
    body = await request.read()
    if request.content_type == "application/json":
        data = json.loads(body or b"{}")
        return data if isinstance(data, dict) else {}
    return {k: v[0] for k, v in parse_qs(body.decode()).items()}


def make_app() -> web.Application:
    counters = Counters()
    seq = 0

    async def auth_test(_request: web.Request) -> web.Response:
        counters.auth_calls += 1
        return web.json_response({"ok": True, "url": "https://bench.slack.com/", "team": "Bench",
                                  "user": "bench-bot", "team_id": "T1", "user_id": "UBOT",
                                  "bot_id": "BBOT"})

    async def post_message(request: web.Request) -> web.Response:
        nonlocal seq
        params = await _params(request)
        now = time.time()
        seq += 1
        counters.posts += 1
        counters.first_post = counters.first_post or now
        counters.last_post = now
        channel = str(params.get("channel", ""))
        counters.threads.add((channel, str(params.get("thread_ts", ""))))
        ts = f"{int(now)}.{seq:06d}"
        return web.json_response({"ok": True, "channel": channel, "ts": ts,
                                  "message": {"type": "message", "text": params.get("text"),
                                              "user": "UBOT", "bot_id": "BBOT", "ts": ts}})

    async def unknown(_request: web.Request) -> web.Response:
        counters.other_calls += 1
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def count(_request: web.Request) -> web.Response:
        return web.json_response(counters.as_dict())

    async def reset(_request: web.Request) -> web.Response:
        counters.reset()
        return web.json_response(counters.as_dict())

    app = web.Application()
    app.router.add_post("/api/auth.test", auth_test)
    app.router.add_post("/api/chat.postMessage", post_message)
    app.router.add_route("*", "/api/{method}", unknown)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    return app


async def _serve(host: str, port: int, port_file: str | None) -> None:
    runner = web.AppRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    server = site._server
    bound = server.sockets[0].getsockname()[1] if server and server.sockets else port
    if port_file:
        Path(port_file).write_text(str(bound))
    print(f"fake slack api on http://{host}:{bound}/api/", flush=True)
    await asyncio.Event().wait()  # until killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.port_file))


if __name__ == "__main__":
    main()
