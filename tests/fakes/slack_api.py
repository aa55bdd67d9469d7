"""A fake Slack Web API on 127.0.0.1 that speaks Slack's wire format and records what it got."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web


class FakeSlackAPI:
    """`auth.test` and `chat.postMessage`, plus scripted failures: `ok: false` errors and 429s.

    Live replies too: `assistant.threads.setStatus` (refused with `refuse_status`, as Slack does
    outside assistant threads or without the scope), `reactions.add/remove`, `chat.startStream`
    / `appendStream` / `stopStream` (refused with `refuse_streams`), `chat.update`, with
    `message_not_found`, `message_not_in_streaming_state`, and per-method faults
    (`fault(method, …)`: an error, a 429 with Retry-After, or an answer lost after the call
    took effect, which is what a timeout looks like to the caller). `messages` holds what a
    person sees: every message by ts, its text and whether it is still streaming.
    """

    def __init__(self, bot_user_id: str = "UBOT", bot_id: str = "BBOT", team: str = "T1") -> None:
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team = team
        self.posts: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []  # chat.update calls
        self.ephemerals: list[dict[str, Any]] = []  # chat.postEphemeral calls
        self.auth_calls = 0
        self._failures: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.delay = 0.0
        self.down_until = 0.0
        self.refused = 0
        self._ts = 0
        self._sockets: list[web.WebSocketResponse] = []
        self.socket_acks: list[dict[str, Any]] = []
        self.bot_token = "xoxb-test"  # url_private answers only this bearer token
        self.private_files: dict[str, bytes] = {}  # url path -> bytes
        self.file_infos: dict[str, dict[str, Any]] = {}  # file id -> files.info's `file`
        self.file_requests: list[dict[str, str]] = []  # each url_private GET: path, auth
        self.download_failures = 0  # the next url_private GETs answer 503
        self.download_delay = 0.0  # seconds before a url_private GET answers
        self.pending_uploads: dict[str, dict[str, Any]] = {}  # file_id -> upload ticket
        self.uploads: list[dict[str, Any]] = []  # completed uploads: bytes, channel, thread
        self.upload_failures = 0  # the next POSTs to an upload URL answer 500
        self.messages: dict[str, dict[str, Any]] = {}  # ts -> channel, thread_ts, text, streaming
        self.calls: list[tuple[float, str, dict[str, Any]]] = []  # (time, method, params)
        self.reactions: set[tuple[str, str, str]] = set()  # (channel, ts, name)
        self.refuse_status: str | None = None  # e.g. "not_allowed", "missing_scope"
        self.refuse_streams: str | None = None  # e.g. "not_allowed"
        self._faults: dict[str, list[tuple[str, Any]]] = {}
        self.dms: dict[str, str] = {}  # user -> the bot's DM channel with them (conversations.open)
        self.missing_users: set[str] = set()  # conversations.open answers user_not_found

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    # --- scripting ---------------------------------------------------------------------------

    def fail_next(self, error: str, times: int = 1) -> None:
        """The next `times` chat.postMessage calls answer {"ok": false, "error": error}."""
        with self._lock:
            self._failures += [("error", {"error": error})] * times

    def rate_limit_next(self, retry_after: int = 1, times: int = 1) -> None:
        with self._lock:
            self._failures += [("429", {"retry_after": retry_after})] * times

    def server_error_next(self, times: int = 1) -> None:
        with self._lock:
            self._failures += [("500", {})] * times

    def down_for(self, seconds: float) -> None:
        """Answer every chat.postMessage with HTTP 503 for the next `seconds`."""
        self.down_until = time.time() + seconds

    def fault(self, method: str, kind: str = "error", value: Any = "internal_error",
              times: int = 1) -> None:
        """The next `times` calls to `method` fail: kind `error` ({"ok": false, "error":
        value}), `429` (Retry-After: value seconds), `deleted` (the message `ts` is deleted just
        before the call) or `lost` (the call takes effect, then the connection closes without
        an answer)."""
        with self._lock:
            self._faults.setdefault(method, []).extend([(kind, value)] * times)

    def method_calls(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [params for _, name, params in self.calls if name == method]

    def visible(self, channel: str | None = None) -> list[dict[str, Any]]:
        """The bot's messages as people see them, oldest first."""
        with self._lock:
            return [dict(m, ts=ts) for ts, m in sorted(self.messages.items())
                    if channel is None or m["channel"] == channel]

    def posts_to(self, channel: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in self.posts if p.get("channel") == channel]

    # --- server ------------------------------------------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        """Arguments as Slack takes them: a JSON body, a form, or the query string."""
        body = await request.read()
        query = dict(request.query)  # slack-sdk sends some methods' arguments in the query
        if request.content_type == "application/json":
            return query | json.loads(body or b"{}")
        return query | {k: v[0] for k, v in parse_qs(body.decode()).items()}

    async def _auth_test(self, request: web.Request) -> web.Response:
        self.auth_calls += 1
        return web.json_response({"ok": True, "url": "https://acme.slack.com/", "team": "Acme",
                                  "user": "switchboard", "team_id": self.team,
                                  "user_id": self.bot_user_id, "bot_id": self.bot_id})

    async def _post_message(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if time.time() < self.down_until:
            self.refused += 1
            return web.Response(status=503, text="service unavailable")
        if self.delay:
            await asyncio.sleep(self.delay)
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure and failure[0] == "429":
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(failure[1]["retry_after"])})
        if failure and failure[0] == "500":
            return web.Response(status=500, text="internal server error")
        if failure:
            return web.json_response({"ok": False, **failure[1]})
        with self._lock:
            self._ts += 1
            ts = f"{int(time.time())}.{self._ts:06d}"
            self.posts.append({**params, "ts": ts,
                               "auth": request.headers.get("Authorization", "")})
            self.calls.append((time.time(), "chat.postMessage", params))
            self.messages[ts] = {"channel": params.get("channel"), "text": params.get("text"),
                                 "thread_ts": params.get("thread_ts"), "streaming": False}
            queued = self._faults.get("chat.postMessage") or []
            lost = bool(queued) and queued.pop(0)[0] == "lost"
        if lost and request.transport is not None:
            request.transport.close()  # posted; the caller never hears so
        return web.json_response({"ok": True, "channel": params.get("channel"), "ts": ts,
                                  "message": {"type": "message", "text": params.get("text"),
                                              "user": self.bot_user_id, "bot_id": self.bot_id,
                                              "ts": ts}})

    async def _post_ephemeral(self, request: web.Request) -> web.Response:
        """chat.postEphemeral: only `user` sees it; Slack answers a message_ts."""
        params = await self._params(request)
        if not params.get("channel") or not params.get("user"):
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        with self._lock:
            self.ephemerals.append(params)
        return web.json_response({"ok": True, "message_ts": f"{time.time():.6f}"})

    # --- files ------------------------------------------------------------------------------

    def add_file(self, data: bytes, name: str, mimetype: str,
                 url_host: str | None = None) -> dict[str, Any]:
        """A file a person shared, as Slack lists it on the message event (`files`)."""
        with self._lock:
            self._ts += 1
            file_id = f"F0{self._ts:08d}"
        path = f"/files-pri/{self.team}-{file_id}/{name}"
        download = f"/files-pri/{self.team}-{file_id}/download/{name}"
        self.private_files[path] = self.private_files[download] = data
        base = url_host or f"http://127.0.0.1:{self.port}"
        info = {"id": file_id, "created": int(time.time()), "name": name, "title": name,
                "mimetype": mimetype, "filetype": name.rpartition(".")[2], "size": len(data),
                "mode": "hosted", "is_external": False, "url_private": base + path,
                "url_private_download": base + download}
        self.file_infos[file_id] = info
        return info

    async def _files_info(self, request: web.Request) -> web.Response:
        """files.info: the file's object (how a Slack Connect file's URLs are found)."""
        params = await self._params(request)
        with self._lock:
            self.calls.append((time.time(), "files.info", params))
            info = self.file_infos.get(str(params.get("file")))
        if info is None:
            return web.json_response({"ok": False, "error": "file_not_found"})
        return web.json_response({"ok": True, "file": info, "comments": [],
                                  "response_metadata": {"next_cursor": ""}})

    async def _private_file(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if self.download_delay:
            await asyncio.sleep(self.download_delay)
        with self._lock:
            self.file_requests.append({"path": request.path, "auth": auth})
            if self.download_failures > 0:
                self.download_failures -= 1
                return web.Response(status=503, text="service unavailable")
        if auth != f"Bearer {self.bot_token}":
            # Slack's quirk: a missing or wrong token gets its sign-in page, with 200
            return web.Response(text="<html><body>Sign in to Slack</body></html>",
                                content_type="text/html")
        data = self.private_files.get(request.path)
        if data is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _get_upload_url(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        if not params.get("filename") or not str(params.get("length", "")).isdigit():
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        with self._lock:
            self._ts += 1
            file_id = f"F1{self._ts:08d}"
            self.pending_uploads[file_id] = {"filename": params["filename"],
                                             "length": int(params["length"]), "data": None}
        return web.json_response({"ok": True, "file_id": file_id,
                                  "upload_url": f"http://127.0.0.1:{self.port}/upload/v1/"
                                                f"{file_id}"})

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        with self._lock:
            if self.upload_failures > 0:
                self.upload_failures -= 1
                return web.Response(status=500, text="upload failed")
            ticket = self.pending_uploads.get(file_id)
            if ticket is None:
                return web.Response(status=404, text="Not Found")
            ticket["data"] = data
            ticket["auth"] = request.headers.get("Authorization", "")  # of the upload itself
        return web.Response(text=f"OK - {len(data)}")

    async def _complete_upload(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        try:
            files = json.loads(params.get("files") or "[]")
        except ValueError:
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        done = []
        with self._lock:
            for item in files:
                ticket = self.pending_uploads.pop(item.get("id"), None)
                if ticket is None or ticket["data"] is None:
                    return web.json_response({"ok": False, "error": "file_not_found"})
                if len(ticket["data"]) != ticket["length"]:
                    return web.json_response({"ok": False, "error": "file_upload_size_mismatch"})
                self.uploads.append({**ticket, "id": item["id"], "title": item.get("title"),
                                     "channel": params.get("channel_id"),
                                     "thread_ts": params.get("thread_ts")})
                done.append({"id": item["id"], "title": item.get("title")})
        return web.json_response({"ok": True, "files": done})

    # --- Socket Mode -------------------------------------------------------------------------

    async def _connections_open(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer xapp-"):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response({"ok": True, "url": f"ws://127.0.0.1:{self.port}/link"})

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "debug_info": {"host": "fake"}})
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                with self._lock:
                    self.socket_acks.append(json.loads(message.data))
        return ws

    def socket_send(self, envelope: dict[str, Any]) -> None:
        """Push one Socket Mode envelope to every connected client."""
        assert self._loop is not None

        async def send() -> None:
            for ws in list(self._sockets):
                if not ws.closed:
                    await ws.send_json(envelope)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(10)

    @property
    def socket_connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    # --- live replies ------------------------------------------------------------------------

    async def _live(self, request: web.Request) -> web.Response:
        method = request.path.rsplit("/", 1)[1]
        params = await self._params(request)
        with self._lock:
            self.calls.append((time.time(), method, params))
            queued = self._faults.get(method) or []
            fault = queued.pop(0) if queued else None
        if fault and fault[0] == "429":
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(fault[1])})
        if fault and fault[0] == "error":
            return web.json_response({"ok": False, "error": fault[1]})
        if fault and fault[0] == "deleted":  # someone deleted the message meanwhile
            with self._lock:
                self.messages.pop(str(params.get("ts")), None)
        with self._lock:
            answer = getattr(self, "_" + method.replace(".", "_"))(params)
        if fault and fault[0] == "lost":
            assert request.transport is not None
            request.transport.close()  # it took effect; the caller never hears so
        return web.json_response(answer)

    def _new_ts(self) -> str:
        self._ts += 1
        return f"{int(time.time())}.{self._ts:06d}"

    def _assistant_threads_setStatus(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_status:
            return {"ok": False, "error": self.refuse_status}
        if not p.get("channel_id") or not p.get("thread_ts") or "status" not in p:
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True}

    def _reactions_add(self, p: dict[str, Any]) -> dict[str, Any]:
        key = (p.get("channel"), p.get("timestamp"), p.get("name"))
        if key in self.reactions:
            return {"ok": False, "error": "already_reacted"}
        self.reactions.add(key)  # type: ignore[arg-type]
        return {"ok": True}

    def _reactions_remove(self, p: dict[str, Any]) -> dict[str, Any]:
        key = (p.get("channel"), p.get("timestamp"), p.get("name"))
        if key not in self.reactions:
            return {"ok": False, "error": "no_reaction"}
        self.reactions.discard(key)  # type: ignore[arg-type]
        return {"ok": True}

    def _chat_startStream(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.refuse_streams:
            return {"ok": False, "error": self.refuse_streams}
        channel = str(p.get("channel") or "")
        if not channel.startswith("D") and not (p.get("recipient_user_id")
                                                and p.get("recipient_team_id")):
            return {"ok": False, "error": "invalid_arguments"}  # required outside DMs
        ts = self._new_ts()
        self.messages[ts] = {"channel": channel, "thread_ts": p.get("thread_ts"),
                             "text": p.get("markdown_text") or "", "streaming": True}
        return {"ok": True, "channel": channel, "ts": ts}

    def _streaming(self, p: dict[str, Any]) -> dict[str, Any] | None:
        message = self.messages.get(str(p.get("ts")))
        if message is None or message["channel"] != p.get("channel"):
            return None
        return message

    def _chat_appendStream(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming(p)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if not message["streaming"]:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        message["text"] += p.get("markdown_text") or ""
        return {"ok": True, "channel": p["channel"], "ts": p["ts"]}

    def _chat_stopStream(self, p: dict[str, Any]) -> dict[str, Any]:
        answer = self._chat_appendStream({**p, "markdown_text": p.get("markdown_text") or ""})
        if answer["ok"]:
            self.messages[str(p["ts"])]["streaming"] = False
        return answer

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._streaming(p)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if message["streaming"]:
            return {"ok": False, "error": "cant_update_message"}
        message["text"] = p.get("text") or ""
        self.updates.append(p)
        return {"ok": True, "channel": p["channel"], "ts": p["ts"], "text": message["text"],
                "message": {"type": "message", "text": message["text"],
                            "user": self.bot_user_id, "bot_id": self.bot_id}}

    async def _replies(self, request: web.Request) -> web.Response:
        """conversations.replies: the bot's messages in a thread (newer than `oldest`)."""
        params = await self._params(request)
        thread, oldest = params.get("ts"), float(params.get("oldest") or 0)
        with self._lock:
            found = [{"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id,
                      "ts": ts, "thread_ts": m["thread_ts"], "text": m["text"]}
                     for ts, m in sorted(self.messages.items())
                     if m["thread_ts"] == thread and float(ts) >= oldest]
        return web.json_response({"ok": True, "messages": found, "has_more": False})

    async def _open(self, request: web.Request) -> web.Response:
        """conversations.open with `users`: the DM's channel, as Slack answers it
        (`no_op`/`already_open` when it was open), or `user_not_found`."""
        params = await self._params(request)
        user = str(params.get("users") or "")
        with self._lock:
            self.calls.append((time.time(), "conversations.open", params))
            if not user or "," in user:
                return web.json_response({"ok": False, "error": "users_list_not_supplied"
                                          if not user else "not_enough_users"})
            if user in self.missing_users:
                return web.json_response({"ok": False, "error": "user_not_found"})
            opened = user in self.dms
            channel = self.dms.setdefault(user, "D" + user.removeprefix("U") + "X")
        answer: dict[str, Any] = {"ok": True, "channel": {"id": channel}}
        if opened:
            answer |= {"no_op": True, "already_open": True}
        return web.json_response(answer)

    async def _unknown(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _serve(self, ready: threading.Event) -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/files-pri/{path:.+}", self._private_file)
        app.router.add_post("/api/files.getUploadURLExternal", self._get_upload_url)
        app.router.add_route("*", "/api/files.info", self._files_info)
        app.router.add_post("/api/files.completeUploadExternal", self._complete_upload)
        app.router.add_post("/upload/v1/{file_id}", self._upload)
        app.router.add_post("/api/auth.test", self._auth_test)
        app.router.add_post("/api/chat.postMessage", self._post_message)
        app.router.add_post("/api/chat.postEphemeral", self._post_ephemeral)
        app.router.add_post("/api/apps.connections.open", self._connections_open)
        for method in ("assistant.threads.setStatus", "reactions.add", "reactions.remove",
                       "chat.startStream", "chat.appendStream", "chat.stopStream",
                       "chat.update"):
            app.router.add_post(f"/api/{method}", self._live)
        app.router.add_get("/link", self._link)
        app.router.add_route("*", "/api/conversations.replies", self._replies)
        app.router.add_post("/api/conversations.open", self._open)
        app.router.add_route("*", "/api/{method}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()

    def start(self) -> FakeSlackAPI:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.create_task(self._serve(ready))
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            async def close() -> None:
                for ws in self._sockets:
                    await ws.close()
                await self._runner.cleanup()  # type: ignore[union-attr]

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(10)

    def __enter__(self) -> FakeSlackAPI:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
