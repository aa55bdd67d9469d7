"""One logged-in IMAP connection to a mailbox (aioimaplib), with the few commands reading a
mailbox and filing sent mail need; every failure a `MailboxError` that names its stage (DNS,
connection, TLS, login, folder …) in words an operator can act on. Secrets never appear in
them: the password is only ever sent, and a token command's output is the token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import shlex
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

import aioimaplib

from inbox.errors import MailboxError
from inbox.settings import EmailSettings

log = logging.getLogger(__name__)

# aioimaplib has no STARTTLS (iroco-co/aioimaplib#1): the command is known to it here, and the
# upgrade is asyncio's own `loop.start_tls` on the connection's transport.
aioimaplib.Commands.setdefault("STARTTLS", aioimaplib.Cmd(
    "STARTTLS", (aioimaplib.NONAUTH,), aioimaplib.Exec.is_sync))

_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_EXISTS = re.compile(rb"^(\d+) EXISTS$")
TOKEN_TIMEOUT = 30.0  # seconds an oauth2_token_command may take


class _Protocol(aioimaplib.IMAP4ClientProtocol):
    """aioimaplib drops an untagged `EXISTS` that comes with another command's answer (new
    mail arriving during a SEARCH): noted here, so the reader looks again before it IDLEs
    instead of waiting for the next message to wake it."""

    new_mail = False

    def _untagged_response(self, line: bytes) -> aioimaplib.Command:
        if _EXISTS.match(line.removeprefix(b"* ")):
            self.new_mail = True
        return super()._untagged_response(line)

    def _continuation(self, line: bytes) -> None:
        # A refused XOAUTH2 token is answered with a challenge (base64 JSON: status, scope)
        # that waits for an empty line before the tagged NO (RFC 7628 3.2.3; Gmail, Microsoft
        # 365, Dovecot); aioimaplib would wait out its timeout instead of sending it.
        command = self.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE" and self.transport:
            command.append_to_resp(line.removeprefix(b"+").strip())
            self.transport.write(b"\r\n")
            return
        super()._continuation(line)


class _Client(aioimaplib.IMAP4):
    protocol: _Protocol

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        self.protocol = _Protocol(loop, conn_lost_cb)
        self._client_task = loop.create_task(loop.create_connection(
            lambda: self.protocol, host, port, ssl=ssl_context))


@dataclass(frozen=True)
class Folder:
    """A selected folder: its UIDVALIDITY, the UID the next message will get, its size."""

    name: str
    uidvalidity: int
    uidnext: int
    exists: int


def quote(name: str) -> str:
    """A folder name as an IMAP quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(response: aioimaplib.Response) -> str:
    """The server's words of a tagged answer (the last line), as text."""
    lines = [bytes(line) for line in response.lines if isinstance(line, bytes | bytearray)]
    return lines[-1].decode("utf-8", "replace").strip() if lines else response.result


class ImapSession:
    """A connection that has logged in to the account's mailbox; `open` makes one."""

    def __init__(self, settings: EmailSettings, client: _Client,
                 lost: asyncio.Event) -> None:
        self.settings = settings
        self.client = client
        self.lost = lost  # set when the server closes the connection
        self.folder: Folder | None = None

    # --- connecting ------------------------------------------------------------------------

    @classmethod
    async def open(cls, settings: EmailSettings) -> ImapSession:
        """Resolve, connect, secure (tls, starttls), log in (password or XOAUTH2)."""
        host, port = settings.imap_host or "", settings.mailbox_port
        timeout = settings.imap_timeout.total_seconds()
        where = f"{host}:{port}"
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM),
                                   timeout)
        except (OSError, TimeoutError) as error:
            raise MailboxError("dns", f"cannot resolve {host}: "
                               f"{getattr(error, 'strerror', None) or error or 'timed out'}"
                               ) from None
        lost = asyncio.Event()
        tls = ssl.create_default_context()  # the system's trust store; honours SSL_CERT_FILE
        client = _Client(host, port, loop=loop, timeout=timeout,
                         conn_lost_cb=lambda _error: lost.set(),
                         ssl_context=tls if settings.imap_security == "tls" else None)
        session = cls(settings, client, lost)
        try:
            await session._hello(where, tls)
            await session._login()
        except BaseException:
            await session.close()
            raise
        return session

    async def _hello(self, where: str, tls: ssl.SSLContext) -> None:
        try:
            await self.client.wait_hello_from_server()
        except ssl.SSLError as error:
            raise MailboxError("tls", f"TLS with {where} failed: {tls_words(error)}") from None
        except TimeoutError:
            raise MailboxError("connect", f"{where} did not greet within "
                               f"{self.client.timeout:g} s") from None
        except OSError as error:
            raise MailboxError("connect", f"cannot connect to {where}: "
                               f"{error.strerror or error}") from None
        except aioimaplib.AioImapException as error:
            raise MailboxError("connect", f"{where} is not an IMAP server: {error}") from None
        if self.settings.imap_security == "starttls":
            await self._starttls(where, tls)

    async def _starttls(self, where: str, tls: ssl.SSLContext) -> None:
        protocol = self.client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise MailboxError("tls", f"{where} does not offer STARTTLS; use imap_security: "
                               "tls (port 993)")
        response = await self.command(protocol.execute(aioimaplib.Command(
            "STARTTLS", protocol.new_tag(), loop=protocol.loop)), "STARTTLS")
        if response.result != "OK":
            raise MailboxError("tls", f"{where} refused STARTTLS: {_said(response)}")
        loop = asyncio.get_running_loop()
        try:
            protocol.transport = await asyncio.wait_for(loop.start_tls(
                protocol.transport, protocol, tls, server_hostname=self.settings.imap_host),
                self.client.timeout)
        except (ssl.SSLError, OSError, TimeoutError) as error:
            raise MailboxError("tls", f"TLS with {where} failed: {tls_words(error)}") from None
        await self.command(protocol.capability(), "CAPABILITY")  # they may differ under TLS

    async def _login(self) -> None:
        settings = self.settings
        user = settings.username or ""
        if settings.oauth2_token_command:
            token = await run_token_command(settings.oauth2_token_command)
            response = await self.command(self.client.xoauth2(user, token), "AUTHENTICATE")
        else:
            response = await self.command(self.client.login(user, settings.password or ""),
                                          "LOGIN")
        if response.result != "OK":
            raise MailboxError("login", f"{settings.imap_host} refused the login of {user}: "
                               f"{_said(response)}{token_words(response)}")
        # the capabilities after login are the ones that count (IDLE, MOVE, SPECIAL-USE)
        await self.command(self.client.protocol.capability(), "CAPABILITY")

    # --- commands --------------------------------------------------------------------------

    async def command(self, pending: object, what: str) -> aioimaplib.Response:
        """Await one command; a lost connection, a timeout or a protocol error is a
        `MailboxError("connection", …)`."""
        answer = asyncio.ensure_future(pending)  # type: ignore[arg-type]
        lost = asyncio.ensure_future(self.lost.wait())  # a closed connection answers nothing
        try:
            await asyncio.wait({answer, lost}, timeout=self.client.timeout * 2,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not answer.done():
            answer.cancel()
            said = "the server closed the connection" if lost.done() and not \
                lost.cancelled() else f"no answer from {self.settings.imap_host} in time"
            raise MailboxError("connection", f"{what}: {said}")
        try:
            return answer.result()
        except (TimeoutError, aioimaplib.CommandTimeout):
            raise MailboxError("connection", f"{what} got no answer from "
                               f"{self.settings.imap_host} in time") from None
        except (aioimaplib.AioImapException, OSError) as error:
            raise MailboxError("connection", f"{what} failed: {error}") from None

    def new_mail(self) -> bool:
        """Whether the server told of new mail since the last call."""
        said, self.client.protocol.new_mail = self.client.protocol.new_mail, False
        return said

    def has(self, capability: str) -> bool:
        return capability in self.client.protocol.capabilities

    @property
    def capabilities(self) -> list[str]:
        return sorted(self.client.protocol.capabilities)

    async def select(self, name: str) -> Folder:
        response = await self.command(self.client.select(quote(name)), "SELECT")
        if response.result != "OK":
            raise MailboxError("folder", f"cannot open folder {name!r}: {_said(response)}")
        codes: dict[bytes, int] = {}
        exists = 0
        for line in response.lines:
            for key, value in _CODE.findall(bytes(line)):
                codes[key] = int(value)
            if found := _EXISTS.match(bytes(line)):
                exists = int(found.group(1))
        if b"UIDVALIDITY" not in codes:
            raise MailboxError("folder", f"folder {name!r} has no UIDVALIDITY")
        self.folder = Folder(name, codes[b"UIDVALIDITY"], codes.get(b"UIDNEXT", 0), exists)
        return self.folder

    async def search(self, *criteria: str) -> list[int]:
        response = await self.command(self.client.uid_search(*criteria, charset=None),
                                      "UID SEARCH")
        if response.result != "OK":
            raise MailboxError("folder", f"UID SEARCH failed: {_said(response)}")
        first = bytes(response.lines[0]) if response.lines else b""
        return sorted(int(uid) for uid in first.split() if uid.isdigit())

    async def uids_after(self, uid: int) -> list[int]:
        """UIDs above `uid` (`n:*` always names the highest message, so filter)."""
        return [found for found in await self.search("UID", f"{uid + 1}:*") if found > uid]

    async def size(self, uid: int) -> int | None:
        response = await self.command(self.client.uid("fetch", str(uid), "(RFC822.SIZE)"),
                                      "FETCH")
        for line in response.lines:
            if found := re.search(rb"RFC822\.SIZE (\d+)", bytes(line)):
                return int(found.group(1))
        return None  # expunged meanwhile

    async def fetch(self, uid: int) -> bytes | None:
        """The message as it is (BODY.PEEK: reading does not set \\Seen), or None when gone."""
        response = await self.command(self.client.uid("fetch", str(uid), "(BODY.PEEK[])"),
                                      "FETCH")
        for line in response.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def mark_processed(self, uid: int, processed_folder: str | None) -> None:
        """\\Seen, and moved to `processed_folder` when there is one."""
        await self.ok(self.client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Seen)"),
                      f"marking message {uid} \\Seen")
        if not processed_folder:
            return
        target = quote(processed_folder)
        if self.has("MOVE"):
            await self.ok(self.client.uid("move", str(uid), target), f"moving message {uid}")
            return
        await self.ok(self.client.uid("copy", str(uid), target), f"copying message {uid}")
        await self.ok(self.client.uid("store", str(uid), "+FLAGS.SILENT", r"(\Deleted)"),
                      f"deleting message {uid}")
        if self.has("UIDPLUS"):
            await self.ok(self.client.uid("expunge", str(uid)), "EXPUNGE")

    async def ok(self, pending: object, what: str) -> aioimaplib.Response:
        response = await self.command(pending, what)
        if response.result != "OK":
            raise MailboxError("folder", f"{what} failed: {_said(response)}")
        return response

    async def folders(self) -> dict[str, set[str]]:
        """Every folder with its flags (`\\Sent` and the other special-use ones)."""
        response = await self.ok(self.client.list('""', '"*"'), "LIST")
        found: dict[str, set[str]] = {}
        for line in response.lines:
            if match := _LIST.match(bytes(line)):
                name = match.group("name").decode("utf-8", "replace")
                if name.startswith('"') and name.endswith('"'):
                    name = re.sub(r"\\(.)", r"\1", name[1:-1])
                found[name] = set(match.group("flags").decode().split())
        return found

    async def ensure_folder(self, name: str) -> None:
        if name not in await self.folders():
            await self.ok(self.client.create(quote(name)), f"creating folder {name!r}")

    async def sent_folder(self) -> str | None:
        """The configured sent_folder, else the one flagged \\Sent, else None."""
        if self.settings.sent_folder:
            return self.settings.sent_folder
        for name, flags in (await self.folders()).items():
            if "\\Sent" in flags:
                return name
        return None

    async def append(self, folder: str, raw: bytes) -> None:
        await self.ok(self.client.append(raw, mailbox=quote(folder), flags=r"(\Seen)"),
                      f"APPEND to {folder!r}")

    # --- waiting ---------------------------------------------------------------------------

    async def idle(self, timeout: float) -> None:
        """IDLE (RFC 2177) until the server tells of a change, or `timeout` passes."""
        idle = await self.command(self.client.idle_start(timeout=timeout), "IDLE")
        waiting = asyncio.ensure_future(self.client.wait_server_push(timeout + 1))
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({waiting, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if not waiting.done():
            waiting.cancel()
            raise MailboxError("connection", "the server closed the connection")
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            pushed = waiting.result()
            if any(bytes(line).startswith(b"BYE") for line in pushed
                   if isinstance(line, bytes | bytearray)):
                raise MailboxError("connection", "the server said BYE")
        if self.client.has_pending_idle():
            self.client.idle_done()
        await self.command(idle, "IDLE")

    async def noop(self) -> None:
        await self.ok(self.client.noop(), "NOOP")

    async def close(self) -> None:
        """Log out politely when the connection still stands; close it either way."""
        protocol = self.client.protocol
        if not self.lost.is_set() and not self.client.has_pending_idle() and \
                protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.logout(), 2)
        transport = protocol.transport
        if transport is not None:
            transport.close()
        with contextlib.suppress(Exception):
            self.client._client_task.cancel()


def token_words(response: aioimaplib.Response) -> str:
    """What a refused XOAUTH2 challenge says (`{"status": "401", "scope": …}`), or ""."""
    for line in response.lines:
        try:
            said = json.loads(base64.b64decode(bytes(line), validate=True))
        except (ValueError, TypeError):
            continue
        if isinstance(said, dict) and said.get("status"):
            scope = f", scope {said['scope']}" if said.get("scope") else ""
            return f" (the token was refused: status {said['status']}{scope})"
    return ""


def tls_words(error: BaseException) -> str:
    """A TLS failure the way an operator reads it (the certificate check, first of all)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"the server's certificate was not accepted ({error.verify_message})"
    return str(error) or type(error).__name__


async def run_token_command(command: str) -> str:
    """Run `oauth2_token_command` (a shell command) and take what it prints as the token."""
    try:
        process = await asyncio.create_subprocess_shell(
            command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), TOKEN_TIMEOUT)
    except TimeoutError:
        process.kill()
        raise MailboxError("token", f"oauth2_token_command took more than {TOKEN_TIMEOUT:g} s"
                           ) from None
    except OSError as error:
        raise MailboxError("token", f"oauth2_token_command could not run: {error}") from None
    token = out.decode("utf-8", "replace").strip()
    if process.returncode != 0 or not token:
        said = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        name = shlex.split(command)[0] if command.strip() else command
        raise MailboxError("token", f"oauth2_token_command ({name}) failed with exit code "
                           f"{process.returncode}: {said[0][:200]}")
    return token


__all__ = ["Folder", "ImapSession", "quote", "run_token_command"]
