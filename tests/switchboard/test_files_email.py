"""Files by email, end to end over real SMTP: a mail's attachments and inline images reach an
http agent through signed links (bytes equal), over-limit ones are skipped with the reason,
and the agent's files come back as MIME attachments of the reply."""

from __future__ import annotations

import base64
import hashlib
import smtplib
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

from conftest import Server
from fakes.agents import FileAgent
from fakes.mail import Relay, provision, turn_of

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00IHDR" + bytes(200)
DATA = b'{"token": "admin-token-for-tests", "rows": [1]}'  # a configured secret, in a file




def config(agent_url: str, relay_port: int) -> str:
    return f"""
agents:
  helper: {{handler: http, url: "{agent_url}/turn"}}
accounts:
  mail:
    provider: email
    domain: agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
    files: {{max_file_bytes: 20000}}
bindings:
  - {{agent: helper, account: mail}}
"""


def mail_with_files(sender: str, to: str, big: bytes = b"") -> tuple[str, bytes]:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, "The report"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content("See the attached report.")
    msg.add_alternative('<p>See <img src="cid:chart@example.com"></p>', subtype="html")
    msg.get_payload()[1].add_related(PNG, "image", "png", cid="<chart@example.com>")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report.pdf")
    msg.add_attachment(DATA, maintype="application", subtype="json", filename="data.json")
    if big:
        msg.add_attachment(big, maintype="application", subtype="zip", filename="big.zip")
    return str(msg["Message-ID"]), msg.as_bytes(policy=policy.SMTP)


def test_attachments_reach_the_agent_and_its_files_come_back(
        serve, file_agent: FileAgent, mail_relay: tuple[Relay, int]) -> None:
    handler, port = mail_relay
    server: Server = serve(config(file_agent.url, port))
    inbox = provision(server, "helper")
    csv = b"id,total\n1,42\n"
    file_agent.answer_files = [{"name": "totals.csv", "type": "text/csv",
                           "content_base64": base64.b64encode(csv).decode()}]
    message_id, raw = mail_with_files("alice@example.com", inbox, big=bytes(30000))
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.sendmail("alice@example.com", [inbox], raw)
    turn = turn_of(server, inbox, message_id)
    assert turn["status"] == "delivered", turn
    assert file_agent.downloads["report.pdf"] == PDF
    assert file_agent.downloads["image-1.png"] == PNG  # the inline image, named for it
    sent = file_agent.requests[0]["turn"]
    assert {f["name"] for f in sent["files"]} == {"report.pdf", "image-1.png", "data.json"}
    assert sent["files_skipped"] == [{"name": "big.zip", "size": 30000,
                                      "reason": "big.zip skipped: 30 KB is over the 20 KB limit"}]
    assert [f["sha256"] for f in sent["files"] if f["name"] == "report.pdf"] == \
        [hashlib.sha256(PDF).hexdigest()]
    names = [e["name"] for e in turn["events"]]
    assert "file_stored" in names and "file_skipped" in names
    reply = handler.wait(1)[0]
    attachments = {p.get_filename(): p.get_content() for p in reply.iter_attachments()}
    assert attachments == {"totals.csv": csv.decode()}
    files = {f["name"]: f for f in turn["files"]}
    assert files["big.zip"]["status"] == "skipped"
    assert files["totals.csv"]["direction"] == "out"


def test_signed_links_refuse_changes_and_expiry(serve, file_agent: FileAgent,
                                                mail_relay: tuple[Relay, int]) -> None:
    server: Server = serve(config(file_agent.url, mail_relay[1]))
    inbox = provision(server, "helper")
    message_id, raw = mail_with_files("bob@example.com", inbox)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.sendmail("bob@example.com", [inbox], raw)
    turn = turn_of(server, inbox, message_id)
    pdf = next(f for f in turn["files"] if f["name"] == "report.pdf")
    link = pdf["url"]
    assert link.startswith(server.url + "/files/")
    download = server.http.get(link)
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith('attachment; filename="report.pdf"')
    data = next(f for f in turn["files"] if f["name"] == "data.json")
    download = server.http.get(data["url"])  # a JSON file is a file: streamed, never rewritten
    assert download.content == DATA and download.headers["content-type"] == "application/json"
    other = next(f for f in turn["files"] if f["name"] != "report.pdf")
    assert server.http.get(link.replace(pdf["id"], other["id"])).status_code == 403
    assert server.http.get(link[:-2] + ("00" if not link.endswith("00") else "11")
                           ).status_code == 403
    assert server.http.get(link + "é").status_code == 403
    server.runtime.clock.advance(timedelta(minutes=59))
    assert server.http.get(link).status_code == 200  # files.url_ttl: 1h by default
    server.runtime.clock.advance(timedelta(minutes=2))
    assert server.http.get(link).status_code == 403
    info = server.api("GET", f"/api/files/{pdf['id']}", token="viewer-token-for-tests")
    assert info.status_code == 200 and info.json()["size"] == len(PDF)
    content = server.api("GET", f"/api/files/{pdf['id']}/content")
    assert content.content == PDF
