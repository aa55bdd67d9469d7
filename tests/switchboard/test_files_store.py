"""The file store through the running app: the same bytes are kept once, deleting a session
removes its files and the blobs nothing else references, `files.retention` sweeps old files,
the agent's files by URL and over the limit, the openai handler's image parts, the metrics."""

from __future__ import annotations

import base64
import json
import smtplib
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from conftest import OPERATOR, Server, run_cli, wait_until
from fakes.agents import FakeOpenAI, FileAgent
from fakes.mail import Relay, provision, turn_of

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)




def config(agent_url: str, relay_port: int, files_dir: Path, extra: str = "") -> str:
    return f"""
agents:
  helper: {{handler: http, url: "{agent_url}/turn"}}
accounts:
  mail:
    provider: email
    domain: agents.test
    relay_host: 127.0.0.1
    relay_port: {relay_port}
    files: {{max_file_bytes: 5000}}
files: {{dir: "{files_dir}", retention: 30d}}
bindings:
  - {{agent: helper, account: mail, session_scope: sender}}
{extra}"""


def mail(server: Server, sender: str, to: str, *files: tuple[str, str, bytes]) -> dict:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, "files"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content("here you go")
    for name, kind, data in files:
        maintype, subtype = kind.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as client:
        client.sendmail(sender, [to], msg.as_bytes(policy=policy.SMTP))
    return turn_of(server, to, str(msg["Message-ID"]))


def blobs(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp"]


def test_same_bytes_kept_once_and_deleting_a_session_removes_its_files(
        serve, file_agent: FileAgent, mail_relay: tuple[Relay, int], tmp_path: Path,
        database_url: str) -> None:
    root = tmp_path / "store"
    server: Server = serve(config(file_agent.url, mail_relay[1], root))
    inbox = provision(server, "helper")
    first = mail(server, "alice@example.com", inbox, ("a.pdf", "application/pdf", PDF),
                 ("b.png", "image/png", PNG))
    second = mail(server, "bob@example.com", inbox, ("copy.pdf", "application/pdf", PDF))
    assert first["session_id"] != second["session_id"]
    assert len(blobs(root)) == 2  # three files, two distinct contents
    assert server.api("POST", f"/api/sessions/{first['session_id']}/end",
                      token=OPERATOR).status_code == 200
    assert server.api("DELETE", f"/api/sessions/{first['session_id']}").status_code == 200
    for file in first["files"]:
        assert server.api("GET", f"/api/files/{file['id']}").status_code == 404
    [kept] = blobs(root)  # the PDF is still bob's
    assert kept.read_bytes() == PDF
    assert server.http.get(second["files"][0]["url"]).content == PDF
    shown = run_cli(database_url, tmp_path, "turns", "show", second["id"], "--json")
    assert [(f["name"], f["status"]) for f in json.loads(shown.stdout)["files"]] == \
        [("copy.pdf", "stored")]


def test_retention_sweeps_old_files(serve, file_agent: FileAgent, mail_relay: tuple[Relay, int],
                                    tmp_path: Path) -> None:
    root = tmp_path / "store"
    server: Server = serve(config(file_agent.url, mail_relay[1], root))
    inbox = provision(server, "helper")
    turn = mail(server, "carol@example.com", inbox, ("a.pdf", "application/pdf", PDF))
    assert f"switchboard_files_stored_bytes {float(len(PDF))}" in server.http.get("/metrics").text
    assert server.call(server.runtime.sweep_files()) == 0  # not old yet
    server.runtime.clock.advance(timedelta(days=31))
    assert server.call(server.runtime.sweep_files()) == 1
    assert blobs(root) == []
    assert server.api("GET", f"/api/files/{turn['files'][0]['id']}").status_code == 404
    metrics = server.http.get("/metrics").text
    assert 'switchboard_files_total{direction="in",outcome="stored",provider="email"} 1.0' \
        in metrics
    assert "switchboard_files_stored_bytes 0.0" in metrics


def test_agent_files_by_url_and_over_the_limit_never_hold_the_reply(
        serve, file_agent: FileAgent, mail_relay: tuple[Relay, int], tmp_path: Path) -> None:
    handler, port = mail_relay
    server: Server = serve(config(file_agent.url, port, tmp_path / "store"))
    inbox = provision(server, "helper")
    file_agent.extra["chart.png"] = PNG
    file_agent.answer_files = [
        {"name": "chart.png", "type": "image/png", "url": f"{file_agent.url}/blob/chart.png"},
        {"name": "huge.bin", "type": "application/octet-stream",
         "content_base64": base64.b64encode(bytes(6000)).decode()},
        {"name": "gone.txt", "type": "text/plain", "url": f"{file_agent.url}/blob/missing"}]
    turn = mail(server, "dave@example.com", inbox)
    assert turn["status"] == "delivered"
    [reply] = handler.wait(1)
    assert {p.get_filename(): p.get_content() for p in reply.iter_attachments()} == \
        {"chart.png": PNG}
    # the attachment is marked delivered just after the reply's own delivery is recorded
    files = wait_until(lambda: (found := {f["name"]: f for f in server.turn(turn["id"])["files"]})
                       and found["chart.png"]["status"] == "delivered" and found)
    assert files["huge.bin"]["status"] == "failed"
    assert files["huge.bin"]["reason"] == "huge.bin not sent: it is over the 5 KB limit"
    assert "HTTP 404" in files["gone.txt"]["reason"]
    assert files["chart.png"]["status"] == "delivered"


def test_openai_handler_passes_images_and_small_text(serve, mail_relay: tuple[Relay, int],
                                                     tmp_path: Path) -> None:
    with FakeOpenAI("seen") as model:
        server: Server = serve(f"""
agents:
  helper: {{handler: openai, base_url: "{model.url}/v1"}}
accounts:
  mail: {{provider: email, domain: agents.test, relay_host: 127.0.0.1,
          relay_port: {mail_relay[1]}, files: {{max_file_bytes: 5000}}}}
bindings:
  - {{agent: helper, account: mail}}
""")
        inbox = provision(server, "helper")
        turn = mail(server, "erin@example.com", inbox, ("shot.png", "image/png", PNG),
                    ("notes.txt", "text/plain", b"the printer is on fire"),
                    ("big.pdf", "application/pdf", bytes(6000)))
        assert turn["status"] == "delivered"
        content = model.requests[0]["body"]["messages"][-1]["content"]
    kinds = [part["type"] for part in content]
    assert kinds == ["text", "image_url", "text", "text"]
    assert content[1]["image_url"]["url"] == \
        "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert "the printer is on fire" in content[2]["text"]
    assert "big.pdf was not passed" in content[3]["text"] and "limit" in content[3]["text"]
    assert json.dumps(content)  # plain JSON, as the model server got it


def test_check_names_bad_file_settings(tmp_path: Path) -> None:
    from switchboard.config import ConfigError, load_config

    path = tmp_path / "bindings.yaml"
    path.write_text("public_url: switchboard.example.com\nfiles: {url_ttl: soon}\n"
                    "accounts:\n  mail: {provider: email, domain: a.test,\n"
                    "         files: {max_file_bytes: lots}}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    text = str(raised.value)
    assert "public_url: 'switchboard.example.com' is not an absolute http(s) URL" in text
    assert "files.url_ttl: 'soon' is not a duration" in text
    assert "accounts.mail.files.max_file_bytes: 'lots' is not a size" in text
