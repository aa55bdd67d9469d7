"""A real IMAP server for the tests: Debian's Dovecot as a private process on a loopback port,
with its own config, one passwd-file user and a maildir in a temporary folder (no system
service). Outside CI a missing Dovecot skips the tests that need it; in CI it fails them."""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port

DOVECOT = shutil.which("dovecot") or ("/usr/sbin/dovecot"
                                      if os.path.exists("/usr/sbin/dovecot") else None)
USER, PASSWORD = "support@acme.test", "mailbox-password-1"
SENT = "Sent Items"  # found by its \Sent flag, whatever the name
# Dovecot 2.3's capabilities without IDLE, for the polling test
NO_IDLE = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE LITERAL+ SORT THREAD=REFERENCES "
           "MULTIAPPEND UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
           "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
           "BINARY MOVE SNIPPET=FUZZY SPECIAL-USE")


def dovecot_missing() -> str | None:
    """Why Dovecot cannot run here, or None. In CI it must (`.ci/run` installs it)."""
    if DOVECOT is not None:
        return None
    reason = "Dovecot is not installed (apt-get install dovecot-imapd)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the IMAP tests")
    return reason


CONFIG = """\
instance_name = sbtest-{port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login{mechanisms}
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
passdb {{
  driver = passwd-file{plain_only}
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
{oauth2}userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox "{sent}" {{
    special_use = \\Sent
    auto = create
  }}
}}
protocol imap {{
{capability}
}}
"""


class Dovecot:
    """One private Dovecot: `start()`, `stop()`, `restart()`; `imap()` is a test's own client."""

    def __init__(self, *, idle: bool = True, tls: bool = False,
                 oauth2_url: str | None = None) -> None:
        """`oauth2_url`: tokens (XOAUTH2) are checked by RFC 7662 introspection there."""
        # Dovecot's own processes run as its user: they must reach the folder, so not under
        # pytest's tmp_path (mode 0700); `remove()` deletes it
        root = Path(tempfile.mkdtemp(prefix="sb-dovecot-"))
        root.chmod(0o755)
        self.root = root
        self.port = free_port()
        self.tls_port = free_port() if tls else 0  # implicit TLS; STARTTLS on `port` too
        self.cert = root / "cert.pem"  # for 127.0.0.1 and localhost, when `tls`
        self.idle = idle
        self.process: subprocess.Popen[bytes] | None = None
        for sub in ("run", "state", "mail", "home"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        account = pwd.getpwnam("dovecot") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        self.uid, self.gid = account.pw_uid, account.pw_gid
        ssl = "ssl = no"
        if tls:
            self._make_certificate()
            ssl = f"ssl = yes\nssl_cert = <{self.cert}\nssl_key = <{root / 'key.pem'}"
        oauth2 = ""
        if oauth2_url:
            (root / "oauth2.conf").write_text(
                f"introspection_mode = post\nintrospection_url = {oauth2_url}\n"
                "username_attribute = username\nactive_attribute = active\n"
                "active_value = true\n")
            oauth2 = f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2\n" \
                     f"  args = {root / 'oauth2.conf'}\n}}\n"
        (root / "dovecot.conf").write_text(CONFIG.format(
            mechanisms=" xoauth2" if oauth2_url else "", oauth2=oauth2,
            plain_only="\n  mechanisms = plain login" if oauth2_url else "",
            root=root, port=self.port, tls_port=self.tls_port, ssl=ssl, uid=self.uid,
            gid=self.gid, user=account.pw_name, group=_group(self.gid), sent=SENT,
            capability="" if idle else f"  imap_capability = {NO_IDLE}"))
        if os.geteuid() == 0:
            for path in (root / "mail", root / "home"):
                os.chown(path, self.uid, self.gid)

    def _make_certificate(self) -> None:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", str(self.root / "key.pem"), "-out", str(self.cert),
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True)

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / USER

    def start(self) -> Dovecot:
        assert DOVECOT is not None
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 10
        while True:
            try:
                with imaplib.IMAP4("127.0.0.1", self.port, timeout=2):
                    return self
            except OSError:
                if self.process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"dovecot did not start: {self.log()}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        # the master's children (imap, imap-login) share its process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)

    def kill(self) -> None:
        """Gone at once (a clean stop, with BYE to the clients, takes Dovecot a second)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
            self.process = None

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def imap(self) -> imaplib.IMAP4:
        """The test's own IMAP client (a person working the mailbox, a sender's MTA)."""
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """A message arrives in the mailbox (as the provider's MTA would put it there)."""
        with self._client() as client:
            typ, said = client.append(_quote(folder), "", imaplib.Time2Internaldate(time.time()),
                                      raw)
            assert typ == "OK", said

    def messages(self, folder: str = "INBOX") -> list[tuple[int, set[str], bytes]]:
        """(UID, flags, raw) of each message in `folder`, oldest first."""
        with self._client() as client:
            typ, _ = client.select(_quote(folder), readonly=True)
            assert typ == "OK", folder
            typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            found = []
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head = item[0].decode()
                uid = int(head.split("UID ", 1)[1].split()[0])
                flags = set(head.split("FLAGS (", 1)[1].split(")", 1)[0].split())
                found.append((uid, flags, item[1]))
            return found

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self._client() as client:
            typ, _ = client.select(_quote(folder), readonly=True)
            assert typ == "OK", folder
            return int(client.untagged_responses["UIDVALIDITY"][-1])

    def recreate_inbox(self) -> None:
        """A new UIDVALIDITY: stop, drop the maildir's messages and indexes, start again.
        Dovecot takes the clock's second for a new folder's UIDVALIDITY (its record of the
        last one goes with the maildir), so a folder recreated within the second it was
        created would get the same one: wait for the next second first."""
        old = self.uidvalidity()
        self.kill()
        shutil.rmtree(self.maildir)
        while int(time.time()) <= old:
            time.sleep(0.05)
        self.start()
        assert self.uidvalidity() != old

    def _client(self) -> _Session:
        return _Session(self)


class _Session:
    def __init__(self, server: Dovecot) -> None:
        self.server = server

    def __enter__(self) -> imaplib.IMAP4:
        self.client = self.server.imap()
        return self.client

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            self.client.logout()


def _quote(folder: str) -> str:
    return f'"{folder}"' if " " in folder else folder


def _group(gid: int) -> str:
    import grp

    return grp.getgrgid(gid).gr_name
