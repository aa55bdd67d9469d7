"""A fake Telegram Bot API server on 127.0.0.1, speaking the real wire format.

It runs its own event loop in a background thread, so sync tests, async tests and tests that
run the app as a subprocess can all use it:

    with FakeTelegramAPI() as fake:
        account = TelegramAccount("main", "123:abc", base_url=fake.base_url)
        fake.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Any, Self

from aiohttp import web

# Parameters Telegram types as String; everything else PTB sends JSON-encoded when not a str.
_STRING_PARAMS = {"text", "caption", "url", "secret_token", "parse_mode", "ip_address"}


class FakeTelegramAPI:
    """Serves /bot{token}/{method}: getMe, sendMessage, getUpdates, setWebhook, deleteWebhook,
    and for live replies sendChatAction, sendMessageDraft (private chats only) and
    editMessageText (with Telegram's "message is not modified" and "message to edit not
    found"). `messages` holds what a person sees: (chat, message_id) -> text. `lose_next`
    makes a call take effect and then closes the connection unanswered (a timeout, as the
    caller sees it)."""

    def __init__(
        self, bot_id: int = 999, username: str = "switchboard_bot", token: str | None = None
    ) -> None:
        self.bot_id = bot_id
        self.username = username
        self.token = token  # when set, other tokens get 401 Unauthorized
        self.webhook: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._failures: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._next_message_id = 1
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing = False
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, bytes)
        self.uploads: list[dict[str, Any]] = []  # what sendDocument / sendPhoto carried
        self.downloads: list[str] = []  # file paths fetched from /file/bot<token>/...
        self.download_failures = 0  # the next downloads answer 502
        self.messages: dict[tuple[int, int], str] = {}
        self.drafts: dict[tuple[int, int], str] = {}  # (chat, draft_id) -> text
        self.log: list[tuple[float, str, Any]] = []  # (time, method, chat_id) of every call
        self._lost: dict[str, int] = defaultdict(int)

    # -- test controls --------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The Bot API base URL to give PTB; the token is appended to it."""
        return f"http://127.0.0.1:{self._port}/bot"

    def calls(self, method: str) -> list[dict[str, Any]]:
        """Decoded parameters of every call to `method` so far, failed ones included."""
        with self._lock:
            return [dict(c) for c in self._calls[method.lower()]]

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        times: int = 1,
        after: int = 0,
    ) -> None:
        """Answer the next `times` calls to `method` with a Telegram error (the calls after
        the next `after` ones, which are answered as usual)."""
        body: dict[str, Any] = {"ok": False, "error_code": error_code, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        with self._lock:
            self._failures[method.lower()].extend({"pass": True} for _ in range(after))
            self._failures[method.lower()].extend(dict(body) for _ in range(times))

    def lose_next(self, method: str, times: int = 1) -> None:
        """The next `times` calls to `method` take effect, then go unanswered."""
        with self._lock:
            self._lost[method.lower()] += times

    def visible(self, chat_id: int) -> list[str]:
        """The bot's messages in a chat as people see them, oldest first."""
        with self._lock:
            return [text for (chat, _), text in sorted(self.messages.items()) if chat == chat_id]

    def fail_next_with_page(self, method: str, status: int, times: int = 1) -> None:
        """Answer the next `times` calls to `method` with an HTML error page, not Telegram's
        JSON: what a proxy, a captive portal or a misrouted base_url answers. Like Apache's
        pages, it quotes the requested path, and so the bot token."""
        with self._lock:
            self._failures[method.lower()].extend({"page": status} for _ in range(times))

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (update_id assigned if missing); returns it."""
        with self._lock:
            update = {"update_id": self._next_update_id, **update}
            self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
            self._updates.append(update)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake)
        return update

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving on a free port in a background thread."""
        self._closing = False
        ready = threading.Event()
        errors: list[OSError] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except OSError as exc:  # e.g. cannot bind; reported to start()'s caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-telegram-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop serving; long polls in progress return at once."""
        if self._loop is None or self._thread is None:
            return
        self._closing = True
        self._loop.call_soon_threadsafe(self._wake)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_file(self, data: bytes, name: str = "file.bin") -> str:
        """A file on Telegram's servers, as a person's message would carry it; its file_id."""
        with self._lock:
            file_id = f"BQACAgIAAx{len(self.files):04d}{secrets.token_hex(6)}"
            self.files[file_id] = (f"documents/file_{len(self.files)}_{name}", data)
        return file_id

    async def _download(self, request: web.Request) -> web.StreamResponse:
        """`/file/bot<token>/<file_path>`: the bytes of a file getFile pointed at."""
        if self.token is not None and request.match_info["token"] != self.token:
            return web.Response(status=401, text="Unauthorized")
        path = request.match_info["path"]
        with self._lock:
            self.downloads.append(path)
            if self.download_failures > 0:
                self.download_failures -= 1
                return web.Response(status=502, text="Bad Gateway")
            found = next((data for p, data in self.files.values() if p == path), None)
        if found is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found, content_type="application/octet-stream")

    async def _api_getfile(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(params.get("file_id") or "")
        with self._lock:
            found = self.files.get(file_id)
        if found is None:
            return _error(400, "Bad Request: invalid file_id")
        if len(found[1]) > 20 * 10**6:
            return _error(400, "Bad Request: file is too big")
        return _ok({"file_id": file_id, "file_unique_id": file_id[-8:],
                    "file_size": len(found[1]), "file_path": found[0]})

    async def _upload(self, request: web.Request, method: str, field: str,
                      params: dict[str, Any]) -> dict[str, Any]:
        """sendDocument / sendPhoto: multipart/form-data with the file in `field`."""
        form = await request.post()
        part = form.get(field)
        if not isinstance(part, web.FileField):
            return _error(400, f"Bad Request: there is no {field} in the request")
        data = part.file.read()
        with self._lock:
            message_id, self._next_message_id = self._next_message_id, self._next_message_id + 1
            file_id = f"AgACAgIAAx{message_id:04d}{secrets.token_hex(6)}"
            self.uploads.append({"method": method, "filename": part.filename,
                                 "content_type": part.content_type, "data": data, **params})
        message: dict[str, Any] = {"message_id": message_id, "from": self._bot_user(),
                                   "chat": {"id": params.get("chat_id"), "type": "private"},
                                   "date": int(time.time())}
        if "message_thread_id" in params:
            message |= {"message_thread_id": params["message_thread_id"], "is_topic_message": True}
        if field == "photo":
            message["photo"] = [{"file_id": file_id, "file_unique_id": file_id[-8:],
                                 "width": 90, "height": 90, "file_size": len(data)}]
        else:
            message["document"] = {"file_id": file_id, "file_unique_id": file_id[-8:],
                                   "file_name": part.filename, "file_size": len(data),
                                   "mime_type": part.content_type}
        return _ok(message)

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._wakeup = asyncio.Event()
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    def _wake(self) -> None:
        """Wake every waiting long poll (runs on the server's loop)."""
        if self._wakeup is not None:
            old, self._wakeup = self._wakeup, asyncio.Event()
            old.set()

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if self.token is not None and request.match_info["token"] != self.token:
            return _answer({"ok": False, "error_code": 401, "description": "Unauthorized"})
        method = request.match_info["method"].lower()  # Telegram ignores the method's case
        params = await _params(request)
        with self._lock:
            self._calls[method].append(params)
            self.log.append((time.time(), method, params.get("chat_id")))
            failure = self._failures[method].popleft() if self._failures[method] else None
            lost = self._lost[method] > 0
            if lost:
                self._lost[method] -= 1
        if failure is not None and "pass" in failure:
            failure = None
        if failure is not None and "page" in failure:
            return _page(failure["page"], request.path)
        if failure is not None:
            return _answer(failure)
        if method in ("senddocument", "sendphoto"):
            field = "photo" if method == "sendphoto" else "document"
            return _answer(await self._upload(request, method, field, params))
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _answer({"ok": False, "error_code": 404, "description": "Not Found"})
        answer = await handler(params)
        if lost and request.transport is not None:
            request.transport.close()
        return _answer(answer)

    async def _api_sendchataction(self, params: dict[str, Any]) -> dict[str, Any]:
        if "chat_id" not in params:
            return _error(400, "Bad Request: chat_id is empty")
        if params.get("action") not in ("typing", "upload_photo", "record_video",
                                        "upload_document", "choose_sticker", "find_location"):
            return _error(400, "Bad Request: wrong parameter action in request")
        return _ok(True)

    async def _api_sendmessagedraft(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id, draft_id = params.get("chat_id"), params.get("draft_id")
        if not isinstance(chat_id, int) or chat_id <= 0:
            return _error(400, "Bad Request: TEXTDRAFT_PEER_INVALID")
        if not isinstance(draft_id, int) or draft_id == 0:
            return _error(400, "Bad Request: draft_id must be non-zero")
        if len(str(params.get("text") or "")) > 4096:
            return _error(400, "Bad Request: message is too long")
        with self._lock:
            self.drafts[(chat_id, draft_id)] = str(params.get("text") or "")
        return _ok(True)

    async def _api_editmessagetext(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params.get("chat_id"), params.get("message_id"))
        text = str(params.get("text") or "")
        with self._lock:
            current = self.messages.get(key)  # type: ignore[arg-type]
            if current is None:
                return _error(400, "Bad Request: message to edit not found")
            if not text.strip():
                return _error(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                return _error(400, "Bad Request: MESSAGE_TOO_LONG")
            if current == text:
                return _error(400, "Bad Request: message is not modified: specified new "
                              "message content and reply markup are exactly the same as a "
                              "current content and reply markup of the message")
            self.messages[key] = text  # type: ignore[index]
        chat = {"id": key[0], "type": "private" if key[0] > 0 else "supergroup"}  # type: ignore[operator]
        return _ok({"message_id": key[1], "from": self._bot_user(), "chat": chat,
                    "date": int(time.time()), "edit_date": int(time.time()), "text": text})

    async def _api_getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(self._bot_user() | {"can_join_groups": True, "supports_inline_queries": False})

    async def _api_sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        text = str(params.get("text") or "")
        if "chat_id" not in params:
            return _error(400, "Bad Request: chat_id is empty")
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        chat_id = params["chat_id"]
        chat_id = chat_id if isinstance(chat_id, int) else -1001000000000
        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
        if chat_id > 0:
            chat["first_name"] = "Person"
        with self._lock:
            message_id, self._next_message_id = self._next_message_id, self._next_message_id + 1
            self.messages[(chat_id, message_id)] = text
        message = {
            "message_id": message_id,
            "from": self._bot_user(),
            "chat": chat,
            "date": int(time.time()),
            "text": text,
        }
        if isinstance(params.get("reply_markup"), dict) and \
                "inline_keyboard" in params["reply_markup"]:
            message["reply_markup"] = params["reply_markup"]
        if "message_thread_id" in params:
            message |= {"message_thread_id": params["message_thread_id"], "is_topic_message": True}
        return _ok(message)

    async def _api_answercallbackquery(self, params: dict[str, Any]) -> dict[str, Any]:
        """answerCallbackQuery: True; Telegram refuses a missing or over-long text."""
        if "callback_query_id" not in params:
            return _error(400, "Bad Request: query_id_invalid")
        if len(str(params.get("text") or "")) > 200:
            return _error(400, "Bad Request: MESSAGE_TOO_LONG")
        return _ok(True)

    async def _api_editmessagereplymarkup(self, params: dict[str, Any]) -> dict[str, Any]:
        """editMessageReplyMarkup: the edited Message (without `reply_markup` once removed)."""
        if "chat_id" not in params or "message_id" not in params:
            return _error(400, "Bad Request: message identifier is not specified")
        message = self._edited(params)
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        return _ok(message)

    def _edited(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = params["chat_id"] if isinstance(params["chat_id"], int) else -1001000000000
        return {"message_id": params["message_id"], "from": self._bot_user(),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                "date": int(time.time()), "edit_date": int(time.time()), "text": ""}

    async def _api_getupdates(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.webhook.get("url"):
            return _error(
                409,
                "Conflict: can't use getUpdates method while webhook is active;"
                " use deleteWebhook to delete the webhook first",
            )
        offset, limit = int(params.get("offset") or 0), int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while True:
            wakeup = self._wakeup
            with self._lock:
                if offset > 0:  # confirms every update before offset
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                elif offset < 0:
                    self._updates = self._updates[offset:]
                batch = self._updates[:limit]
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0 or self._closing or wakeup is None:
                return _ok(batch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), remaining)

    async def _api_setwebhook(self, params: dict[str, Any]) -> dict[str, Any]:
        self.webhook = dict(params)
        return _ok(True, "Webhook was set")

    async def _api_deletewebhook(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("drop_pending_updates"):
            with self._lock:
                self._updates.clear()
        description = "Webhook was deleted" if self.webhook else "Webhook is already deleted"
        self.webhook = {}
        return _ok(True, description)

    async def _api_getwebhookinfo(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            pending = len(self._updates)
        info = {"url": self.webhook.get("url", ""), "has_custom_certificate": False}
        return _ok(info | {"pending_update_count": pending})

    def _bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Switchboard",
                "username": self.username}  # fmt: skip


async def _params(request: web.Request) -> dict[str, Any]:
    """Decode query, form or JSON parameters the way Telegram types them."""
    raw: dict[str, Any] = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        return raw | (body if isinstance(body, dict) else {})
    if request.can_read_body:
        raw |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    params: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            params[key] = value if key in _STRING_PARAMS else json.loads(value)
        except ValueError:
            params[key] = value
    return params


def _ok(result: Any, description: str | None = None) -> dict[str, Any]:
    body = {"ok": True, "result": result}
    return body | ({"description": description} if description else {})


def _error(code: int, description: str) -> dict[str, Any]:
    return {"ok": False, "error_code": code, "description": description}


def _page(status: int, path: str) -> web.Response:
    """An Apache-style error page for `path`."""
    phrase = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
              502: "Bad Gateway"}.get(status, "Error")
    text = (f'<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n<html><head>\n'
            f"<title>{status} {phrase}</title>\n</head><body>\n<h1>{phrase}</h1>\n"
            f"<p>The requested URL {path} was not found on this server.</p>\n<hr>\n"
            "<address>Apache/2.4.62 (Debian) Server at api.telegram.org Port 443</address>\n"
            "</body></html>\n")
    return web.Response(status=status, text=text, content_type="text/html")


def _answer(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=200 if body["ok"] else body["error_code"])
