"""`switchboard inbox test ACCOUNT`: can Switchboard read this account's mailbox, and what
does its server offer? Says exactly which step fails (DNS, TLS, login, folder)."""

from __future__ import annotations

from channels.errors import CommandFailed
from inbox.errors import MailboxError
from inbox.settings import EmailSettings

STAGES = {"dns": "DNS", "connect": "connection", "tls": "TLS", "token": "XOAUTH2 token",
          "login": "login", "folder": "folder", "connection": "connection"}


async def test_mailbox(account: str, settings: EmailSettings) -> str:
    """Connect, log in, open the folder (and find Sent); the folder's size and the server's
    capabilities, or `CommandFailed` naming the step that failed."""
    from inbox.imap import ImapSession

    if settings.mode != "imap":
        raise CommandFailed(f"account {account} has no mailbox to test (mode: smtp): its mail "
                            "comes to serve's SMTP server")
    where = f"{settings.imap_host}:{settings.mailbox_port} ({settings.imap_security})"
    try:
        session = await ImapSession.open(settings)
    except MailboxError as error:
        raise CommandFailed(f"{STAGES.get(error.stage, error.stage)} failed: {error}") from None
    try:
        folder = await session.select(settings.folder)
        sent = await session.sent_folder()
        processed = settings.processed_folder
        if processed and processed not in await session.folders():
            processed = f"{processed} (created at the first message)"
    except MailboxError as error:
        raise CommandFailed(f"{STAGES.get(error.stage, error.stage)} failed: {error}") from None
    finally:
        await session.close()
    said = "yes" if session.has("IDLE") else "no: polled every " + str(settings.poll_interval)
    return "\n".join([
        f"{account}: logged in to {where} as {settings.username}",
        f"folder {folder.name}: {folder.exists} messages (UIDVALIDITY {folder.uidvalidity})",
        f"IDLE: {said}",
        f"special-use: {'yes' if session.has('SPECIAL-USE') else 'no'}; "
        f"Sent folder: {sent or 'none found (set sent_folder)'}",
        *([f"processed folder: {processed}"] if processed else []),
        f"capabilities: {' '.join(session.capabilities)}",
    ])
