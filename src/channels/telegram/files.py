"""Telegram files: which of a message's contents are files to fetch, getFile and the download
from `/file/bot<token>/<path>` (streamed), and sendDocument / sendPhoto for the agent's files.

A photo comes in several sizes: the largest is taken. Stickers are not files a person sends
to an agent (they are ignored with the message's other decorations). The Bot API hands a bot
at most 20 MB (getFile refuses larger files), so the account's limit defaults to that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from telegram import Bot, ReplyParameters
from telegram.error import TelegramError

from channels.errors import DeliveryError
from channels.files import CHUNK, FileFetchError, OutboundFile, inbound_file
from channels.messages import OutboundMessage

# content key -> (default name, default type)
FILE_KEYS: dict[str, tuple[str, str]] = {
    "document": ("document", "application/octet-stream"),
    "voice": ("voice.ogg", "audio/ogg"),
    "audio": ("audio.mp3", "audio/mpeg"),
    "video": ("video.mp4", "video/mp4"),
}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def message_files(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The files of a raw Message dict as `channels.files` entries (ref: the file_id)."""
    found: list[dict[str, Any]] = []
    photos = message.get("photo")
    if isinstance(photos, list):
        sizes = [p for p in photos if isinstance(p, dict) and isinstance(p.get("file_id"), str)]
        if sizes:
            largest = max(sizes, key=lambda p: (_int(p.get("width")) or 0)
                          * (_int(p.get("height")) or 0) or (_int(p.get("file_size")) or 0))
            found.append(inbound_file(f"photo-{message.get('message_id', '')}.jpg",
                                      "image/jpeg", _int(largest.get("file_size")),
                                      ref={"file_id": largest["file_id"]}))
    for key, (name, mime) in FILE_KEYS.items():
        item = message.get(key)
        if not isinstance(item, dict) or not isinstance(item.get("file_id"), str):
            continue
        given = item.get("file_name")
        kind = item.get("mime_type")
        found.append(inbound_file(given if isinstance(given, str) and given else name,
                                  kind if isinstance(kind, str) and kind else mime,
                                  _int(item.get("file_size")), ref={"file_id": item["file_id"]}))
    return found


class TelegramFiles:
    """getFile, the streamed download, and the uploads of one bot."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot
        self._http: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def open(self, ref: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """getFile, then the file's bytes from the Bot API's file URL, in chunks."""
        file_id = ref.get("file_id")
        if not isinstance(file_id, str):
            raise FileFetchError("the file has no file_id", permanent=True)
        try:
            file = await self._bot.get_file(file_id)
        except TelegramError as error:
            code = getattr(error, "error_code", None)
            raise FileFetchError(f"getFile failed: {error.message}",
                                 permanent=code in (400, 404)) from None
        if not file.file_path:
            raise FileFetchError("getFile gave no file_path (is the file over 20 MB?)",
                                 permanent=True)
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        # file_path is the whole URL, the token in it: never in an error or a log line
        async with self._http.stream("GET", file.file_path) as response:
            if response.status_code != 200:
                raise FileFetchError(f"the file download answered HTTP {response.status_code}",
                                     permanent=response.status_code in (400, 401, 403, 404))
            async for chunk in response.aiter_bytes(CHUNK):
                yield chunk

    async def send(self, out: OutboundMessage, file: OutboundFile) -> str:
        """sendPhoto for an image (under 10 MB, Telegram's photo limit), sendDocument else,
        in the reply's topic; the sent message's file_id."""
        from channels.telegram.client import _delivery_error, _whole_number

        kwargs: dict[str, Any] = {"chat_id": out.conversation}
        thread = _whole_number("message_thread_id", out.thread)
        quoted = _whole_number("reply_parameters.message_id", out.reply_to)
        if thread is not None:
            kwargs["message_thread_id"] = thread
        if quoted is not None:
            kwargs["reply_parameters"] = ReplyParameters(message_id=quoted,
                                                         allow_sending_without_reply=True)
        data = b"".join([chunk async for chunk in file.chunks()])  # PTB uploads bytes whole
        try:
            if file.is_image and file.size <= 10 * 10**6:
                sent = await self._bot.send_photo(photo=data, filename=file.name, **kwargs)
                return sent.photo[-1].file_id if sent.photo else str(sent.message_id)
            sent = await self._bot.send_document(document=data, filename=file.name, **kwargs)
        except TelegramError as error:
            raise _delivery_error(error) from None
        except ValueError as error:
            raise DeliveryError(f"the file cannot be sent: {error}", permanent=True) from None
        return sent.document.file_id if sent.document else str(sent.message_id)


__all__ = ["FILE_KEYS", "TelegramFiles", "message_files"]
