"""Files as providers hand them in and take them out, without knowing where they are kept.

An adapter that declares `Capability.FILES` lists a message's files on the message
(`InboundMessage.extra["files"]`, built with `inbound_file`): each either already kept in the
application's store (email: its bytes came with the mail, `sha256` set) or to be fetched after
the acknowledgement (`ref`: what the adapter's `open_file` needs, a Slack `url_private`, a
Telegram `file_id`). The application decides by the account's `FileLimits` which are fetched
(`skip_reason`, a pure rule), streams them through `open_file` into its store, and hands the
agent's files to `deliver_file` (or, for adapters whose files travel inside the reply itself,
`files_in_reply`, lists them in the reply's `extra["files"]`, read with `FileStore.read`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from channels.errors import SwitchboardError
from channels.units import Size

MIB = 2**20
CHUNK = 64 * 1024  # bytes read or written at a time: a file never sits whole in memory


class FileLimits(BaseModel):
    """`files:` of an account: what of a message's files is fetched and kept.

    Telegram's Bot API cannot hand a bot more than 20 MB, hence the default.
    `allowed_types` are MIME patterns (`image/*`, `application/pdf`); empty allows all.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_file_bytes: Size = Field(default=20 * MIB, ge=1)
    allowed_types: tuple[str, ...] = ()
    max_files_per_message: int = Field(default=10, ge=0)


def human_size(size: int) -> str:
    """`45 MB`, `512 KB`, `12 bytes`: sizes as a person reads them in a skip reason."""
    if size >= 10**6:
        return f"{size / 10**6:.0f} MB"
    if size >= 10**3:
        return f"{size / 10**3:.0f} KB"
    return f"{size} bytes"


def skip_reason(limits: FileLimits, name: str, mime: str, size: int | None,
                index: int) -> str | None:
    """Why the `index`th file of a message is not fetched, in a person's words, or None."""
    shown = name or "a file"
    if index >= limits.max_files_per_message:
        return (f"{shown} skipped: a message may carry at most "
                f"{limits.max_files_per_message} files")
    if size is not None and size > limits.max_file_bytes:
        return (f"{shown} skipped: {human_size(size)} is over the "
                f"{human_size(limits.max_file_bytes)} limit")
    if limits.allowed_types and not any(fnmatch.fnmatch(mime.lower(), pattern.lower())
                                        for pattern in limits.allowed_types):
        return f"{shown} skipped: type {mime or 'unknown'} is not allowed here"
    return None


def inbound_file(name: str, mime: str, size: int | None, *, ref: Mapping[str, Any] | None = None,
                 sha256: str | None = None) -> dict[str, Any]:
    """One entry of `InboundMessage.extra["files"]` (plain JSON: it is kept with the turn)."""
    entry: dict[str, Any] = {"name": safe_name(name),
                             "type": safe_type(mime or ""), "size": size}
    if ref is not None:
        entry["ref"] = dict(ref)
    if sha256 is not None:
        entry["sha256"] = sha256
    return entry


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def safe_name(name: str, default: str = "file") -> str:
    """A file name fit for a download: no path, no control or shell-special characters, no
    leading dots, at most 200 characters (the extension kept)."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + dot + ext) if dot and len(ext) <= 16 \
            else name[:200]
    return name or default


_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MIME = re.compile(rf"{_TOKEN}/{_TOKEN}")
_PARAM = re.compile(rf"{_TOKEN}=(?:{_TOKEN}|\"[^\"\x00-\x1f\x7f]{{0,100}}\")")


def safe_type(mime: str, default: str = "application/octet-stream") -> str:
    """A MIME type fit for a header (`type/subtype`, lowercased, with its well-formed
    parameters such as `charset=utf-8`); what a sender made up (a line break, a header after
    it, no slash) becomes `default`."""
    bare, *params = (part.strip() for part in mime.split(";"))
    if not _MIME.fullmatch(bare):
        return default
    kept = [p for p in params if _PARAM.fullmatch(p)]
    return "; ".join([bare.lower(), *kept])[:255]


class FileTooLarge(SwitchboardError):
    """A stream was longer than the limit it was kept under; nothing of it is kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over the {human_size(limit)} limit")
        self.limit = limit


class FileFetchError(SwitchboardError):
    """A provider would not hand over a file. `permanent` ones (gone, forbidden) are not
    asked for again; the others are retried with backoff."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class StoredBlob:
    """Bytes kept in the store, named by their SHA-256."""

    sha256: str
    size: int


class FileStore(Protocol):
    """The application's file store as an adapter sees it: keep a stream, read one back."""

    async def put(self, chunks: AsyncIterable[bytes], *,
                  max_bytes: int | None = None) -> StoredBlob:
        """Keep the bytes (once, however often the same bytes come); `FileTooLarge` past
        `max_bytes`."""
        ...

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        """The kept bytes, in chunks."""
        ...


@dataclass(frozen=True)
class OutboundFile:
    """A file an agent made, to deliver with its reply: `chunks()` streams its bytes."""

    id: str
    name: str
    type: str
    size: int
    sha256: str
    chunks: Callable[[], AsyncIterator[bytes]]

    @property
    def is_image(self) -> bool:
        return self.type.lower().startswith("image/")


async def as_chunks(data: bytes) -> AsyncIterator[bytes]:
    """Bytes already in memory as a stream (a decoded email part)."""
    for start in range(0, len(data), CHUNK):
        yield data[start:start + CHUNK]


__all__ = [
    "CHUNK", "FileFetchError", "FileLimits", "FileStore", "FileTooLarge", "OutboundFile",
    "StoredBlob", "as_chunks", "human_size", "inbound_file", "safe_name", "safe_type",
    "skip_reason",
]
