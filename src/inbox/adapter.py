"""One email account running: its mail into turns, its replies out as threaded mail.

`receive` is called by the SMTP listener (`inbox.listener`) for each accepted mail to one of
this account's inboxes, and by the mailbox reader (`inbox.mailbox`, `mode: imap`) for each
message in the mailbox; `deliver` composes the reply and hands it to the relay or the maildir
(and files it in the mailbox's Sent folder). Nothing here talks to a database: inboxes and
threads come through `MailDirectory`, the mailbox's position through `Services`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
from collections.abc import Mapping
from email import policy
from email.errors import MessageError
from email.utils import make_msgid
from typing import Any

from channels.adapter import Services, WebhookResult, reply_in_thread
from channels.errors import DeliveryError, RejectedRequest
from channels.files import as_chunks, inbound_file, skip_reason
from channels.messages import DeliveryReceipt, InboundMessage, OutboundMessage
from channels.outreach import Outreach, Recipient, RecipientRefused
from inbox.auth import check_sender, reply_address
from inbox.automatic import auto_reply_reason
from inbox.dns import txt_lookup
from inbox.errors import MailboxError
from inbox.mailbox import MailboxReader
from inbox.outbound import (
    compose_new,
    compose_reply,
    reply_message_id,
    send_via_relay,
    write_to_maildir,
)
from inbox.parse import ParsedEmail, attached_files, parse_email, to_inbound
from inbox.provider import PROVIDER, Inbox, MailDirectory
from inbox.settings import EmailSettings

log = logging.getLogger(__name__)


class EmailAdapter:
    """One email account: its inbound mail into turns, its replies out by mail."""

    capabilities = PROVIDER.capabilities
    files_in_reply = True  # the agent's files are attachments of the reply mail

    def __init__(self, name: str, settings: EmailSettings, services: Services,
                 directory: MailDirectory) -> None:
        self.name = name
        self.settings = settings
        self.services = services
        self.directory = directory
        # where `sender_auth: dkim` fetches keys: the account's dns_resolver, else the system's
        self.key_lookup = txt_lookup(settings.dns_resolver, settings.dns_timeout.total_seconds())
        self.reader: MailboxReader | None = None
        self._reading: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Addresses the config declares (`inboxes:`, or a mailbox's `agent:`) exist from the
        start; one an operator revoked stays revoked. A mailbox is read from now on."""
        settings = self.settings
        declared = {f"{local}@{settings.domain}".lower(): agent
                    for local, agent in settings.inboxes.items()} if settings.domain else {}
        if settings.mode == "imap" and settings.agent:
            declared[settings.mailbox_address] = settings.agent
        for address, agent in declared.items():
            found = await self.directory.declare_inbox(address, agent, self.name)
            if found is None or found.agent != agent:
                log.warning("inbox %s from the config is revoked or belongs to another "
                            "agent; left as it is", address)
        if settings.mode == "imap":
            self.reader = MailboxReader(self.name, settings, self.services, self.receive_mail)
            self._reading = asyncio.create_task(self.reader.run(), name=f"mailbox-{self.name}")

    async def stop(self) -> None:
        """Stop reading the mailbox (the SMTP server is the listener's)."""
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
            self._reading = None

    def health(self) -> dict[str, Any]:
        """A mailbox's connection as `/api/accounts` shows it; nothing for SMTP inboxes."""
        return self.reader.health() if self.reader is not None else {}

    async def webhook(self, action: str, headers: Mapping[str, str],
                      body: bytes) -> WebhookResult:
        raise RejectedRequest("malformed", "email arrives by SMTP, not by webhook")

    # --- inbound ---------------------------------------------------------------------------

    async def receive_mail(self, raw: bytes) -> str:
        """One message found in the mailbox, to the mailbox's inbox: the SMTP path from the
        parse on. `MalformedEmail` for bytes that are no email."""
        parsed = await asyncio.to_thread(parse_email, raw)
        own = await self.directory.all_inbox_addresses()
        address = self.settings.mailbox_address
        inbox = await self.directory.active_inbox(address, [self.name])
        if inbox is None:
            raise MailboxError("inbox", f"{address} is no live inbox of account {self.name}: "
                               "set agent: on the account, or provision the address")
        return await self.receive(inbox, parsed, raw, mailbox_sender(parsed), own)

    async def receive(self, inbox: Inbox, parsed: ParsedEmail, raw: bytes, envelope_sender: str,
                      own: set[str]) -> str:
        """One email to one inbox of this account, recorded as a turn; returns the turn id."""
        settings = self.settings
        reason = await self.ignore_reason(parsed, raw, envelope_sender, own)
        answer, passed_over = reply_address(parsed, envelope_sender, settings.sender_auth)
        message = to_inbound(parsed, account=self.name, inbox_address=inbox.address,
                             raw=raw, ignore_reason=reason)
        own_id = parsed.message_id or message.event_id
        root = await self.directory.thread_root(
            self.name, [parsed.in_reply_to, *reversed(parsed.references)]) or own_id
        ours = reply_message_id(inbox.address, own_id, settings.mail_domain)
        if reason is None:  # both now: a reply to our answer must find the thread however
            await self.directory.remember_thread(self.name, parsed.message_id, root)
            await self.directory.remember_thread(self.name, ours, root)
        message = dataclasses.replace(
            message,
            # one mail to two inboxes of an account is two turns, so the id names the inbox
            event_id=f"{inbox.address}:{message.event_id}",
            thread=root,
            for_agent=inbox.agent,
            raw={**message.raw, "envelope": {"mail_from": envelope_sender,
                                             "rcpt_to": inbox.address},
                 **raw_payload(raw)},
            extra={**message.extra, "inbox_agent": inbox.agent,
                   "text_from_html": parsed.text_from_html,
                   "reply_extra": {**reply_extra(parsed, inbox.address, settings.mail_domain),
                                   "to": answer, "ignored": passed_over, "reply_id": ours}},
        )
        if reason is None:
            files = await self.keep_attachments(raw)
            if files:
                message = dataclasses.replace(message, extra={**message.extra, "files": files})
        recorded = await self.services.record(message)
        self.services.publish("email.received", {
            "turn_id": recorded.turn_id, "account": self.name, "from": parsed.from_addr,
            "to": inbox.address, "subject": parsed.subject, "message_id": parsed.message_id,
            **({"ignored": reason} if reason else {}),
            **({"duplicate_of": recorded.duplicate_of} if recorded.duplicate_of else {})})
        return recorded.turn_id

    async def keep_attachments(self, raw: bytes) -> list[dict[str, Any]]:
        """Attachments and inline images into the file store before the turn is recorded
        (their bytes came with the mail); those over the account's limits are listed unkept,
        so the turn says why."""
        entries: list[dict[str, Any]] = []
        for index, part in enumerate(attached_files(raw)):
            size = len(part.content)
            entry = inbound_file(part.name, part.content_type, size)
            if part.content_id:
                entry["content_id"] = part.content_id
            if skip_reason(self.settings.files, part.name, part.content_type, size,
                           index) is None:
                blob = await self.services.files.put(as_chunks(part.content))
                entry["sha256"] = blob.sha256
            entries.append(entry)
        return entries

    async def ignore_reason(self, parsed: ParsedEmail, raw: bytes, envelope_sender: str,
                            own: set[str]) -> str | None:
        """Why this mail must be recorded but never answered: automatic mail (auto-replies,
        bounces, reports, lists, our own inboxes) that could loop, or an unauthenticated From.
        Automatic mail is told first: a bounce's From names no one to authenticate.
        `SenderCheckDeferred` when the sender cannot be checked now (the client hears 451)."""
        settings = self.settings
        automatic = auto_reply_reason(parsed, own, envelope_sender=envelope_sender)
        if automatic:
            return automatic
        try:
            forged = await asyncio.to_thread(check_sender, raw, parsed, settings.sender_auth,
                                             settings.authserv_id, self.key_lookup)
        except ValueError as error:  # authentication-results without an authserv_id
            forged = f"sender authentication is not configured correctly: {error}"
        return forged

    # --- outbound --------------------------------------------------------------------------

    def reply_to(self, message: InboundMessage, text: str) -> OutboundMessage:
        """In the mail's thread, answering it, with what composing the reply needs."""
        return reply_in_thread(message, text, extra=message.extra.get("reply_extra"))

    async def deliver(self, out: OutboundMessage) -> DeliveryReceipt:
        """Compose the threaded reply and hand it to the relay, or write it to the maildir."""
        extra = out.extra
        to = extra.get("to") or extra.get("sender")  # never a Reply-To: see reply_address
        if not to:
            raise DeliveryError("the turn has no sender address to answer", permanent=True)
        try:
            msg = compose_new(
                inbox_address=extra.get("inbox") or out.conversation, to=to,
                subject=extra.get("subject") or "", text=out.text,
                message_id=extra["reply_id"]) if extra.get("outreach") else compose_reply(
                inbox_address=extra.get("inbox") or out.conversation, to=to,
                subject=extra.get("subject") or "", message_id=extra.get("message_id") or "",
                reply_text=out.text, domain=extra.get("domain") or self.settings.mail_domain,
                references=extra.get("references") or [], own_id=extra.get("reply_id"))
        except (ValueError, MessageError) as error:  # the same on every attempt: permanent
            raise DeliveryError(f"the reply cannot be composed: {error}",
                                permanent=True) from error
        attached = await self.attach(msg, extra.get("files") or [])
        ours = str(msg["Message-ID"])
        said = {"to": to, **({"ignored": extra["ignored"]} if extra.get("ignored") else {}),
                **({"files": attached} if attached else {})}
        settings = self.settings
        if settings.relay_host:
            await send_via_relay(msg, settings.relay_host, settings.relay_port,
                                 starttls=settings.relay_starttls,
                                 username=settings.relay_username,
                                 password=settings.relay_password)
            if self.reader is not None and settings.file_sent:  # seen among the sent mail
                said.update(await self.reader.file_sent(msg.as_bytes(policy=policy.SMTP)))
            return DeliveryReceipt(ours, {"relay": f"{settings.relay_host}:{settings.relay_port}",
                                          **said})
        folder = os.path.abspath(settings.maildir)
        try:
            path = await asyncio.to_thread(write_to_maildir, msg, folder)
        except OSError as error:
            raise DeliveryError(f"cannot write to the maildir {folder}: {error}",
                                permanent=False) from error
        except (ValueError, MessageError) as error:  # the message cannot be written out
            raise DeliveryError(f"the reply cannot be written: {error}",
                                permanent=True) from error
        return DeliveryReceipt(ours, {"maildir": path, **said})


    async def outreach(self, agent: str, to: Recipient, text: str) -> Outreach:
        """A new mail from the agent's inbox on this account; its Message-ID is chosen now and
        remembered as a thread's root, so the person's reply joins that thread."""
        if not to.email or "@" not in to.email or any(c in to.email for c in " <>,\r\n"):
            raise RecipientRefused("email takes to.email, one address such as ann@example.com")
        inbox = await self.directory.agent_inbox(agent, self.name)
        if inbox is None:
            raise RecipientRefused(f"agent {agent} has no inbox on account {self.name}: "
                                   f"provision one (switchboard inbox provision {agent})")
        address = to.email.strip().lower()
        message_id = make_msgid(domain=self.settings.mail_domain)
        await self.directory.remember_thread(self.name, message_id, message_id)
        out = OutboundMessage(provider="email", account=self.name, conversation=inbox.address,
                              text=text, extra={"outreach": True, "to": address,
                                                "inbox": inbox.address, "reply_id": message_id,
                                                "subject": to.subject or ""})
        reply = InboundMessage(provider="email", account=self.name, event_id="",
                               conversation=inbox.address, kind="dm", sender=address, text="",
                               thread=message_id, mentioned=True, for_agent=inbox.agent)
        return Outreach(out, reply)

    async def attach(self, msg: Any, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The agent's files as MIME attachments of the reply (a mail holds them whole)."""
        attached = []
        for file in files:
            chunks = [chunk async for chunk in self.services.files.read(str(file["sha256"]))]
            maintype, _, subtype = str(file.get("type") or "").partition("/")
            if not maintype or not subtype:
                maintype, subtype = "application", "octet-stream"
            msg.add_attachment(b"".join(chunks), maintype=maintype, subtype=subtype,
                               filename=str(file.get("name") or "file"))
            attached.append({"file_id": file.get("id"), "name": file.get("name")})
        return attached


def reply_extra(parsed: ParsedEmail, inbox_address: str, domain: str) -> dict[str, Any]:
    """What `EmailAdapter.deliver` needs to compose the threaded reply, kept with the turn."""
    return {"subject": parsed.subject, "message_id": parsed.message_id,
            "references": list(parsed.references), "sender": parsed.from_addr,
            "inbox": inbox_address, "domain": domain}


def mailbox_sender(parsed: ParsedEmail) -> str:
    """The envelope sender of mail found in a mailbox: its Return-Path, written by the
    delivering MTA ("" for the null sender of bounces), else From."""
    return_path = parsed.loop_headers.get("return-path")
    if return_path is None:
        return parsed.from_addr
    return return_path.strip().strip("<>").strip().lower()


def raw_payload(raw: bytes) -> dict[str, str]:
    """The raw message for debugging: as text when it is clean UTF-8, else base64."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        return {"raw": text}
    return {"raw_base64": base64.b64encode(raw).decode("ascii")}


__all__ = ["EmailAdapter", "mailbox_sender", "raw_payload", "reply_extra"]
