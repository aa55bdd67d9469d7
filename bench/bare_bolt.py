"""The baseline: a bare slack-bolt `AsyncApp` that answers every mention with `say()`.

It records nothing. It is served like Switchboard is: one uvicorn process, one worker, a
Starlette app, on the same fake Web API.

    python bench/bare_bolt.py --port 8090 --api-url http://127.0.0.1:PORT/api/ \
        --signing-secret SECRET --bot-token xoxb-bench
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.say.async_say import AsyncSay
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def build(signing_secret: str, bot_token: str, api_url: str) -> Starlette:
    client = AsyncWebClient(token=bot_token, base_url=api_url, timeout=10)
    bolt = AsyncApp(signing_secret=signing_secret, client=client)

    @bolt.event("app_mention")
    async def mention(event: dict[str, Any], say: AsyncSay) -> None:
        await say(text=f"echo: {event.get('text', '')}",
                  thread_ts=event.get("thread_ts") or event["ts"])

    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/slack/events", events, methods=["POST"]),
                             Route("/healthz", healthz, methods=["GET"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-url", required=True, help="the Web API, e.g. the fake's /api/")
    parser.add_argument("--signing-secret", required=True)
    parser.add_argument("--bot-token", default="xoxb-bench")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    app = build(args.signing_secret, args.bot_token, args.api_url)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=False)


if __name__ == "__main__":
    main()
