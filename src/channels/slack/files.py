"""Slack files: the files of a message (`files` on `file_share` messages, mentions and DMs),
their download from `url_private` with the bot token (the app needs `files:read`), and the
agent's files uploaded into the reply thread (`files:write`).

The upload is what slack-sdk's `files_upload_v2` does (files.getUploadURLExternal, a POST of
the bytes to the upload URL, files.completeUploadExternal), with the bytes streamed from the
store instead of read whole into memory first.

The token goes only to Slack's file hosts or to the host of the account's `api_url` (tests,
proxies): a `url_private` pointing anywhere else is refused, and so is a redirect there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from yarl import URL

from channels.errors import DeliveryError
from channels.files import CHUNK, FileFetchError, OutboundFile, inbound_file
from channels.messages import OutboundMessage

SLACK_FILE_HOSTS = ("files.slack.com",)
SLACK_FILE_DOMAINS = (".slack.com", ".slack-edge.com", ".slack-files.com")
MAX_REDIRECTS = 3


def message_files(event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The files of a raw message event as `channels.files` entries (ref: the private URL)."""
    found = []
    for item in event.get("files") or []:
        if not isinstance(item, dict):
            continue
        url = item.get("url_private_download") or item.get("url_private")
        size = item.get("size")
        name = item.get("name") or item.get("title") or str(item.get("id") or "file")
        ref: dict[str, Any] = {"id": item.get("id")}
        if isinstance(url, str):
            ref["url"] = url
        if item.get("mode") == "hidden_by_limit":  # a free workspace's file past its history
            ref["hidden"] = True
        entry = inbound_file(str(name), str(item.get("mimetype") or ""),
                             size if isinstance(size, int) else None, ref=ref)
        found.append(entry)
    return found


class SlackFiles:
    """Downloads and uploads of one Slack app, on its Web API client's session."""

    def __init__(self, client: AsyncWebClient, api_url: str) -> None:
        self.client = client
        self.api_host = urlsplit(api_url).netloc.lower()

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.hostname.lower() if parts.hostname else ""
        if parts.netloc.lower() == self.api_host and parts.scheme in ("http", "https"):
            return True
        return parts.scheme == "https" and (host in SLACK_FILE_HOSTS
                                            or host.endswith(SLACK_FILE_DOMAINS))

    async def open(self, ref: Mapping[str, Any]) -> AsyncIterator[bytes]:
        """The file's bytes from its private URL, with the bot token, in chunks."""
        if ref.get("hidden"):
            raise FileFetchError("Slack hides this file (the workspace's plan limits the "
                                 "history it shows)", permanent=True)
        url = ref.get("url")
        if not isinstance(url, str) and isinstance(ref.get("id"), str):
            url = await self._private_url(str(ref["id"]))  # Slack Connect: check_file_info
        if not isinstance(url, str):
            raise FileFetchError("Slack gave no url_private for this file", permanent=True)
        session = self.client.session
        if session is None:
            raise FileFetchError("the Slack account is not started", permanent=False)
        token = self.client.token or ""
        for _ in range(MAX_REDIRECTS + 1):
            if not self._allowed(url):
                raise FileFetchError(f"url_private points at {urlsplit(url).netloc!r}, which "
                                     "is not a Slack file host; the token is not sent there",
                                     permanent=True)
            async with session.get(url, headers={"Authorization": f"Bearer {token}"},
                                   allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=None,
                                                                 sock_read=30)) as response:
                if response.status in (301, 302, 303, 307, 308) and "Location" in response.headers:
                    url = str(response.url.join(URL(response.headers["Location"])))
                    continue
                if response.status != 200:
                    raise FileFetchError(f"Slack answered HTTP {response.status} for the file",
                                         permanent=response.status in (401, 403, 404))
                if response.content_type == "text/html" and ref.get("expect_html") is not True:
                    # Slack's quirk: without files:read it answers 200 with its login page
                    raise FileFetchError("Slack answered a web page instead of the file: does "
                                         "the app have the files:read scope?", permanent=True)
                async for chunk in response.content.iter_chunked(CHUNK):
                    yield chunk
                return
        raise FileFetchError("too many redirects for the file", permanent=False)

    async def _private_url(self, file_id: str) -> str | None:
        """The file's private URL from files.info: a file shared over Slack Connect comes
        as `{"id", "file_access": "check_file_info"}`, without its URLs."""
        try:
            info = await self.client.files_info(file=file_id)
        except SlackApiError as error:
            reason = error.response.get("error") if error.response is not None else None
            raise FileFetchError(f"files.info failed: {reason or 'an error'}",
                                 permanent=reason in ("file_not_found", "file_deleted",
                                                      "missing_scope", "not_authed",
                                                      "invalid_auth")) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise FileFetchError(f"Slack unreachable: {error or type(error).__name__}",
                                 permanent=False) from None
        file = info.get("file") or {}
        url = file.get("url_private_download") or file.get("url_private")
        return url if isinstance(url, str) else None

    async def upload(self, out: OutboundMessage, file: OutboundFile) -> str:
        """getUploadURLExternal, the bytes streamed to the upload URL, completeUploadExternal
        into the reply's thread; Slack's file id."""
        try:
            ticket = await self.client.files_getUploadURLExternal(filename=file.name,
                                                                  length=file.size)
            upload_url, file_id = str(ticket["upload_url"]), str(ticket["file_id"])
            session = self.client.session
            if session is None:
                raise DeliveryError("the Slack account is not started", permanent=False)
            async with session.post(upload_url, data=file.chunks(),
                                    headers={"Content-Length": str(file.size),
                                             "Content-Type": "application/octet-stream"}
                                    ) as response:
                if response.status != 200:
                    raise DeliveryError(f"the upload URL answered HTTP {response.status}",
                                        permanent=False)
            done = await self.client.files_completeUploadExternal(
                files=[{"id": file_id, "title": file.name}], channel_id=out.conversation,
                thread_ts=out.thread)
        except SlackApiError as error:
            from channels.slack.client import delivery_error

            raise delivery_error(error) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            raise DeliveryError(f"Slack unreachable: {error or type(error).__name__}",
                                permanent=False) from None
        files = done.get("files") or []
        return str(files[0].get("id")) if files and isinstance(files[0], dict) else file_id


__all__ = ["SlackFiles", "message_files"]
