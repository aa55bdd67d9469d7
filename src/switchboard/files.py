"""The file store: content-addressed blobs (named by their SHA-256, kept once however often the
same bytes come) behind a small interface, and signed download links.

`Blobs` is all a backend must do; `DirectoryBlobs` keeps them in a directory (`files.dir`).
An S3-compatible backend implements the same four calls (docs/files.md): `write` to a
temporary key while hashing, then copy to `<sha256>`; `read` a streamed GET; `delete`;
`exists` a HEAD. Bytes always stream in `CHUNK`s: no file sits whole in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import IO, Protocol
from urllib.parse import urlencode

from channels.files import CHUNK, FileTooLarge, StoredBlob
from switchboard.config import FilesConfig
from switchboard.db import is_sqlite
from switchboard.store import FileRecord, Store

_SHA256 = re.compile(r"[0-9a-f]{64}")


class Blobs(Protocol):
    """Where file bytes live. Named by SHA-256, so the same bytes are kept once."""

    async def write(self, chunks: AsyncIterable[bytes], max_bytes: int | None) -> StoredBlob:
        """Keep a stream; `FileTooLarge` (and nothing kept) past `max_bytes`."""
        ...

    def read(self, sha256: str) -> AsyncIterator[bytes]: ...

    async def delete(self, sha256: str) -> None: ...

    async def exists(self, sha256: str) -> bool: ...


class DirectoryBlobs:
    """Blobs as files `<dir>/<sha[:2]>/<sha>`, written to `<dir>/tmp` first and renamed, so a
    blob is either whole or absent."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256

    async def write(self, chunks: AsyncIterable[bytes], max_bytes: int | None) -> StoredBlob:
        tmp_dir = self.root / "tmp"
        await asyncio.to_thread(tmp_dir.mkdir, parents=True, exist_ok=True)
        tmp = tmp_dir / f"{secrets.token_hex(8)}.part"
        digest, size = hashlib.sha256(), 0
        handle: IO[bytes] = await asyncio.to_thread(open, tmp, "wb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise FileTooLarge(max_bytes)
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(handle.close)
            sha = digest.hexdigest()
            final = self.path(sha)
            await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(os.replace, tmp, final)  # the same bytes: the same file
            return StoredBlob(sha, size)
        finally:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    async def read(self, sha256: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        handle: IO[bytes] = await asyncio.to_thread(open, self.path(sha256), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
        finally:
            handle.close()

    async def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self.path(sha256).unlink)

    async def exists(self, sha256: str) -> bool:
        return await asyncio.to_thread(self.path(sha256).exists)


def files_dir(config: FilesConfig, database_url: str) -> Path:
    """`files.dir`, else `files` beside a SQLite database, else ./files."""
    if config.dir:
        return Path(config.dir).expanduser().resolve()
    if is_sqlite(database_url):
        path = database_url.split("///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:":
            return Path(path).expanduser().resolve().parent / "files"
    return Path("files").resolve()


class FileService:
    """One per process: keeps and reads blobs (the `channels.files.FileStore` adapters get),
    forgets blobs nothing references, and signs download links."""

    def __init__(self, store: Store, blobs: Blobs, config: FilesConfig, base_url: str) -> None:
        self.store = store
        self.blobs = blobs
        self.config = config
        self.base_url = base_url.rstrip("/")
        self._secret = config.url_secret.encode()

    async def start(self) -> None:
        if not self._secret:
            self._secret = (await self.store.files.url_secret(secrets.token_urlsafe(32))).encode()

    # --- channels.files.FileStore ------------------------------------------------------------

    async def put(self, chunks: AsyncIterable[bytes], *,
                  max_bytes: int | None = None) -> StoredBlob:
        return await self.blobs.write(chunks, max_bytes)

    def read(self, sha256: str) -> AsyncIterator[bytes]:
        return self.blobs.read(sha256)

    async def forget(self, shas: set[str]) -> None:
        """Delete blobs the rows no longer reference (checked again: one may have come back)."""
        for sha in shas:
            if not await self.store.files.referenced(sha):
                await self.blobs.delete(sha)

    # --- signed links ------------------------------------------------------------------------

    def _signature(self, file_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{file_id}.{expires}".encode(), "sha256").hexdigest()

    def signed_path(self, file_id: str, now: float | None = None) -> str:
        """`/files/<id>?expires=…&sig=…`, valid for `files.url_ttl`."""
        ttl = self.config.url_ttl.total_seconds()
        expires = int((now if now is not None else self.store.clock.now().timestamp()) + ttl)
        query = urlencode({"expires": expires, "sig": self._signature(file_id, expires)})
        return f"/files/{file_id}?{query}"

    def signed_url(self, file_id: str) -> str:
        """The absolute link, on `public_url` (else the address `serve` listens on)."""
        return self.base_url + self.signed_path(file_id)

    def link_valid(self, file_id: str, expires: str, sig: str) -> bool:
        """Whether a link's signature is ours for this id and it has not expired."""
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12:
            return False
        expected = self._signature(file_id, int(expires))
        return hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")) \
            and int(expires) >= self.store.clock.now().timestamp()


def file_json(file: FileRecord, files: FileService | None = None) -> dict[str, object]:
    """A file as the API, the console and agents see it (with its download link when kept)."""
    out: dict[str, object] = {"id": file.id, "name": file.name, "type": file.type,
                              "size": file.size, "sha256": file.sha256,
                              "direction": file.direction, "status": file.status,
                              "turn_id": file.turn_id, "session_id": file.session_id}
    if file.reason:
        out["reason"] = file.reason
    if file.provider_file_id:
        out["provider_file_id"] = file.provider_file_id
    if files is not None and file.sha256:
        path = files.signed_path(file.id)
        out["url"] = files.base_url + path
        out["download"] = path  # the same link on this server, for the console
    return out


__all__ = ["Blobs", "DirectoryBlobs", "FileService", "file_json", "files_dir"]
