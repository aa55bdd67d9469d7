"""Gaps an acceptance review found, each shown through the public interfaces: file downloads
scoped to an operator's agents, and a mail as real clients write it (RFC 2231 non-ASCII names,
an inline image by `cid:`, a forwarded message) reaching the turn's files."""

from __future__ import annotations

import hashlib

from conftest import Server
from fakes.mail import Relay, provision, send, turn_of

CONFIG = """
agents:
  triager: {handler: echo}
  helper: {handler: echo}
accounts:
  mail:
    provider: email
    domain: agents.test
    relay_host: 127.0.0.1
    relay_port: RELAY_PORT
bindings:
  - {agent: triager, account: mail}
  - {agent: helper, account: mail}
"""

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256)) * 4


def _b64(data: bytes) -> str:
    import base64
    return base64.encodebytes(data).decode().replace("\n", "\r\n")


def client_mail(to: str, message_id: str) -> bytes:
    """A message the way Thunderbird/Gmail write one: mixed > alternative > related (html and
    an inline image by Content-ID), then a PDF named in RFC 2231 (UTF-8, percent-encoded, and
    split in two continuations) and a forwarded message."""
    return (
        "From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>\r\n"
        f"To: {to}\r\n"
        "Subject: =?UTF-8?B?UmVjaG51bmcgTcOkcno=?=\r\n"
        f"Message-ID: {message_id}\r\n"
        "Date: Tue, 01 Dec 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="------------mixed01"\r\n'
        "\r\n"
        "This is a multi-part message in MIME format.\r\n"
        "--------------mixed01\r\n"
        'Content-Type: multipart/alternative; boundary="------------alt01"\r\n'
        "\r\n"
        "--------------alt01\r\n"
        "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Anbei die Rechnung f\u00fcr M\u00e4rz.\r\n"
        "--------------alt01\r\n"
        'Content-Type: multipart/related; boundary="------------rel01"\r\n'
        "\r\n"
        "--------------rel01\r\n"
        "Content-Type: text/html; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        '<html><body><p>Anbei</p><img src="cid:part1.logo@example.de"></body></html>\r\n'
        "--------------rel01\r\n"
        'Content-Type: image/png; name="logo.png"\r\n'
        "Content-Disposition: inline; filename=\"logo.png\"\r\n"
        "Content-ID: <part1.logo@example.de>\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{_b64(PNG)}"
        "--------------rel01--\r\n"
        "\r\n"
        "--------------alt01--\r\n"
        "\r\n"
        "--------------mixed01\r\n"
        "Content-Type: application/pdf;\r\n"
        " name*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n"
        "Content-Disposition: attachment;\r\n"
        " filename*0*=UTF-8''Rechnung%20M%C3%A4;\r\n"
        " filename*1*=rz.pdf\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
        f"{_b64(PDF)}"
        "--------------mixed01--\r\n"
    ).encode()


def test_mail_client_files_keep_their_names_and_are_scoped_to_the_operators_agents(
        serve, mail_relay: tuple[Relay, int]) -> None:
    server: Server = serve(CONFIG.replace("RELAY_PORT", str(mail_relay[1])))
    tri, help_ = provision(server, "triager"), provision(server, "helper")
    send(server, "juergen@example.de", help_, client_mail(help_, "<h1@example.de>"))
    send(server, "juergen@example.de", tri, client_mail(tri, "<t1@example.de>"))
    helper_turn = turn_of(server, help_, "<h1@example.de>")
    triager_turn = turn_of(server, tri, "<t1@example.de>")
    # RFC 2231 continuations, percent-encoded UTF-8; the inline image by its Content-ID
    files = {f["name"]: f for f in helper_turn["files"]}
    assert set(files) == {"Rechnung März.pdf", "logo.png"}, files
    assert files["Rechnung März.pdf"]["type"] == "application/pdf"
    assert files["Rechnung März.pdf"]["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert files["logo.png"]["type"] == "image/png" and files["logo.png"]["size"] == len(PNG)
    download = server.http.get(files["Rechnung März.pdf"]["url"])
    assert download.content == PDF
    assert "filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf" in download.headers["content-disposition"]
    assert "März" in helper_turn["text"]

    answer = server.api("POST", "/api/operators",
                        json={"name": "tri-viewer", "role": "viewer", "agents": ["triager"]})
    token = answer.json()["token"]
    theirs = {f["name"]: f for f in triager_turn["files"]}
    own = server.api("GET", f"/api/files/{theirs['Rechnung März.pdf']['id']}", token=token)
    assert own.status_code == 200, own.text
    content = server.api("GET", f"/api/files/{theirs['Rechnung März.pdf']['id']}/content",
                         token=token)
    assert content.status_code == 200 and content.content == PDF
    for path in (f"/api/files/{files['Rechnung März.pdf']['id']}",
                 f"/api/files/{files['Rechnung März.pdf']['id']}/content"):
        refused = server.api("GET", path, token=token)
        assert refused.status_code == 403, (path, refused.text)
        assert "limited to the agents triager" in refused.json()["detail"]
        assert PDF[:8] not in refused.content
    # an operator of every agent still sees both
    assert server.api("GET", f"/api/files/{files['logo.png']['id']}").status_code == 200


def test_slack_connect_and_hidden_files_are_fetched_or_explained(
        serve, fake_slack, file_agent) -> None:
    """Real Slack payloads: a file shared over Slack Connect comes as `{"id", "file_access":
    "check_file_info"}` (its URLs from files.info); a free workspace's old file as
    `"mode": "hidden_by_limit"`; a `file_shared` event beside the message makes no second file."""
    from conftest import SIGNING_SECRET, slack_message

    server: Server = serve(f"""
agents:
  helper: {{handler: http, url: "{file_agent.url}/turn"}}
accounts:
  slack-acme:
    provider: slack
    bot_token: xoxb-test
    signing_secret: {SIGNING_SECRET}
    api_url: {fake_slack.api_url}
bindings:
  - {{agent: helper, account: slack-acme, channels: [C0SUPPORT]}}
""")
    shared = fake_slack.add_file(PDF, "contract.pdf", "application/pdf")
    event = slack_message("", subtype="file_share", user="U0PARTNER", files=[
        {"id": shared["id"], "file_access": "check_file_info", "created": 1764669600,
         "user": "U0PARTNER", "user_team": "T0PARTNER"},
        {"id": "F0HIDDEN", "mode": "hidden_by_limit"}])
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    side = server.slack_event("slack-acme", {
        "type": "file_shared", "channel_id": "C0SUPPORT", "file_id": shared["id"],
        "user_id": "U0PARTNER", "file": {"id": shared["id"]}, "event_ts": event["ts"]})
    assert side.status_code == 200
    assert turn["status"] == "delivered", turn
    assert fake_slack.method_calls("files.info")[0]["file"] == shared["id"]
    assert list(file_agent.downloads.values()) == [PDF]
    by_status = {f["status"]: f for f in turn["files"]}
    assert "hides this file" in by_status["failed"]["reason"]
    assert by_status["stored"]["sha256"] == hashlib.sha256(PDF).hexdigest()
    side_turn = server.wait_turn(side.json()["turn_id"])
    assert side_turn["files"] == [] and side_turn["status"] == "ignored", side_turn


def test_file_limits_may_be_written_on_the_account_itself(tmp_path) -> None:
    """Issue 16 names the limits per account (`max_file_bytes`, allowed types, files per
    message): on the account they mean what they mean under its `files:`."""
    import pytest

    from switchboard.config import ConfigError, load_config

    path = tmp_path / "bindings.yaml"
    path.write_text("accounts:\n  mail: {provider: email, domain: a.test, max_file_bytes: 5 MB,"
                    "\n         allowed_types: [image/*], max_files_per_message: 2}\n")
    limits = load_config(path).accounts["mail"].files
    assert (limits.max_file_bytes, limits.allowed_types, limits.max_files_per_message) == \
        (5_000_000, ("image/*",), 2)
    path.write_text("accounts:\n  mail: {provider: email, domain: a.test, max_file_bytes: 5,"
                    "\n         files: {max_file_bytes: 6}}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert "max_file_bytes is set both on the account and under files" in str(raised.value)


def test_a_session_deleted_from_the_cli_leaves_no_blob_behind(
        serve, mail_relay: tuple[Relay, int], tmp_path, database_url: str) -> None:
    """Issue 16: deleting a session deletes its files' rows and any blob no longer
    referenced, from the terminal (`switchboard sessions delete`) as from the API."""
    from conftest import run_cli

    blobs = tmp_path / "files"
    server: Server = serve(CONFIG.replace("RELAY_PORT", str(mail_relay[1]))
                           + f"files: {{dir: '{blobs}'}}\n")
    inbox = provision(server, "helper")
    send(server, "juergen@example.de", inbox, client_mail(inbox, "<d1@example.de>"))
    turn = turn_of(server, inbox, "<d1@example.de>")
    sha = hashlib.sha256(PDF).hexdigest()
    assert (blobs / sha[:2] / sha).exists()
    assert server.api("POST", f"/api/sessions/{turn['session_id']}/end").status_code == 200
    config = sorted(tmp_path.glob("bindings-*.yaml"))[-1]
    done = run_cli(database_url, tmp_path, "sessions", "delete", turn["session_id"],
                   "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert not (blobs / sha[:2] / sha).exists()
    assert server.api("GET", f"/api/files/{turn['files'][0]['id']}").status_code == 404


def test_telegram_media_as_clients_send_them(serve, fake_telegram, file_agent) -> None:
    """A real Bot API update: a voice note, and a document with its thumbnail (both `thumbnail`
    and the older `thumb`) whose name tries to climb out and whose MIME type carries a header.
    The thumbnail is no file; the name is cut to its last part; the download's type is one
    a browser can take, with no header slipped in."""
    import itertools
    import time

    ids = itertools.count(9100)

    def post(msg: dict) -> dict:
        body = {"update_id": next(ids), "message": {
            "message_id": next(ids), "date": int(time.time()),
            "chat": {"id": 42, "type": "private", "first_name": "Alice"},
            "from": {"id": 7, "is_bot": False, "first_name": "Alice", "language_code": "de"},
            **msg}}
        answer = server.http.post("/telegram/tg/webhook", json=body,
                                  headers={"X-Telegram-Bot-Api-Secret-Token": "tg-secret_1"})
        return server.wait_turn(answer.json()["turn_id"])

    server: Server = serve(f"""
agents:
  helper: {{handler: http, url: "{file_agent.url}/turn"}}
accounts:
  tg: {{provider: telegram, token: "123:ABC", webhook_secret: tg-secret_1,
       base_url: {fake_telegram.base_url}}}
bindings:
  - {{agent: helper, account: tg}}
""")
    voice = fake_telegram.add_file(b"OggS" + bytes(300), "voice/file_7.oga")
    doc = fake_telegram.add_file(b"MZ" + bytes(500), "documents/file_8.exe")
    thumb = {"file_id": fake_telegram.add_file(b"\xff\xd8thumb", "thumbnails/t.jpg"),
             "file_unique_id": "AQADthumb", "file_size": 7, "width": 90, "height": 90}
    turn = post({"caption": "two things", "voice": {
        "duration": 3, "mime_type": "audio/ogg", "file_id": voice,
        "file_unique_id": "AgADvoice", "file_size": 304}})
    second = post({"caption": "and this", "document": {
        "file_name": "..\\..\\Windows\\evil.exe", "mime_type": "text/html\r\nSet-Cookie: a=1",
        "thumbnail": thumb, "thumb": thumb, "file_id": doc, "file_unique_id": "AgADdoc",
        "file_size": 502}})
    assert turn["status"] == second["status"] == "delivered", (turn, second)
    assert [f["name"] for f in turn["files"]] == ["voice.ogg"]
    assert turn["files"][0]["type"] == "audio/ogg" and turn["files"][0]["size"] == 304
    [sent] = second["files"]
    assert "\\" not in sent["name"] and "/" not in sent["name"] and sent["name"].endswith(".exe")
    download = server.http.get(sent["url"])
    assert download.status_code == 200 and download.content == b"MZ" + bytes(500)
    assert "set-cookie" not in download.headers
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert len(fake_telegram.calls("getFile")) == 2  # never the thumbnail
