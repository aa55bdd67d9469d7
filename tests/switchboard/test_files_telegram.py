"""Files on Telegram, end to end against the fake Bot API: a photo (largest size), a document
and a voice note reach an http agent through signed links (bytes equal) after getFile and the
`/file/bot<token>/<path>` download; stickers are no files; a failed download is retried; the
agent's files come back by sendPhoto / sendDocument in the topic."""

from __future__ import annotations

import base64
import itertools
import time
from typing import Any

from conftest import wait_until
from fakes.agents import FileAgent

_ids = itertools.count(5000)


def message(text: str | None, **more: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {"message_id": next(_ids), "date": int(time.time()),
                           "chat": {"id": 42, "type": "private"},
                           "from": {"id": 7, "is_bot": False, "first_name": "Alice"}, **more}
    if text is not None:
        msg["text"] = text
    return msg


def update(msg: dict[str, Any]) -> dict[str, Any]:
    return {"update_id": next(_ids), "message": msg}


def post(server, body: dict[str, Any]):
    return server.http.post("/telegram/tg/webhook", json=body,
                            headers={"X-Telegram-Bot-Api-Secret-Token": "tg-secret_123"})

PHOTO = bytes(range(256)) * 30
DOC = b"%PDF-1.4 " + bytes(5000)



def config(base_url: str, agent_url: str, files: str = "{fetch_backoff: 0.05}") -> str:
    return f"""
agents:
  helper: {{handler: http, url: "{agent_url}/turn"}}
accounts:
  tg:
    provider: telegram
    token: "123:ABC"
    webhook_secret: tg-secret_123
    base_url: {base_url}
    files: {{max_file_bytes: 100000}}
files: {files}
delivery: {{backoff: 0.05}}
bindings:
  - {{agent: helper, account: tg}}
"""


def test_photo_and_document_reach_the_agent_and_its_files_come_back(
        serve, fake_telegram, file_agent: FileAgent) -> None:
    server = serve(config(fake_telegram.base_url, file_agent.url))
    small = fake_telegram.add_file(b"thumb", "thumb.jpg")
    large = fake_telegram.add_file(PHOTO, "photo.jpg")
    doc = fake_telegram.add_file(DOC, "report.pdf")
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    file_agent.answer_files = [
        {"name": "chart.png", "type": "image/png",
         "content_base64": base64.b64encode(png).decode()},
        {"name": "data.csv", "type": "text/csv",
         "content_base64": base64.b64encode(b"a,b\n").decode()}]
    fake_telegram.download_failures = 1  # the first download fails, the retry gets it
    fake_telegram.fail_next("sendPhoto", 502, "Bad Gateway")  # the first upload, retried
    msg = message(None, caption="what is this?", message_thread_id=77, is_topic_message=True,
                  photo=[{"file_id": small, "file_unique_id": "s", "width": 90, "height": 90,
                          "file_size": 5},
                         {"file_id": large, "file_unique_id": "l", "width": 800, "height": 600,
                          "file_size": len(PHOTO)}],
                  document={"file_id": doc, "file_unique_id": "d", "file_name": "report.pdf",
                            "mime_type": "application/pdf", "file_size": len(DOC)})
    turn = server.wait_turn(post(server, update(msg)).json()["turn_id"])
    assert turn["status"] == "delivered", turn
    assert file_agent.requests[0]["turn"]["text"] == "what is this?"
    assert file_agent.downloads == {f"photo-{msg['message_id']}.jpg": PHOTO, "report.pdf": DOC}
    names = [e["name"] for e in turn["events"]]
    assert "file_fetch_retry" in names
    uploads = wait_until(lambda: len(fake_telegram.uploads) >= 2 and fake_telegram.uploads)
    by_name = {u["filename"]: u for u in uploads}
    assert by_name["chart.png"]["method"] == "sendphoto"
    assert by_name["chart.png"]["data"] == png
    assert by_name["data.csv"]["method"] == "senddocument"
    assert by_name["data.csv"]["data"] == b"a,b\n"
    assert by_name["data.csv"]["message_thread_id"] == 77
    story = wait_until(lambda: (t := server.turn(turn["id"])) and
                  sum(e["name"] == "file_delivered" for e in t["events"]) == 2 and t)
    delivered = [e for e in story["events"] if e["name"] == "file_delivered"]
    assert any(e["name"] == "file_delivery_retry" for e in story["events"])
    assert all(e["detail"]["provider_file_id"] for e in delivered)


def test_a_sticker_is_no_file_and_an_oversized_document_is_skipped(
        serve, fake_telegram, file_agent: FileAgent) -> None:
    server = serve(config(fake_telegram.base_url, file_agent.url))
    sticker = message(None, sticker={"file_id": "CAACAgI", "file_unique_id": "x", "width": 512,
                                     "height": 512, "is_animated": False, "is_video": False,
                                     "type": "regular"})
    turn = server.wait_turn(post(server, update(sticker)).json()["turn_id"])
    assert turn["status"] == "ignored" and "sticker" in turn["route_reason"]
    big = fake_telegram.add_file(bytes(10), "huge.zip")
    msg = message("here", document={"file_id": big, "file_unique_id": "h",
                                    "file_name": "report.zip", "mime_type": "application/zip",
                                    "file_size": 45_000_000})
    turn = server.wait_turn(post(server, update(msg)).json()["turn_id"])
    assert turn["status"] == "delivered"
    assert file_agent.requests[-1]["turn"]["files_skipped"] == [{
        "name": "report.zip", "size": 45_000_000,
        "reason": "report.zip skipped: 45 MB is over the 100 KB limit"}]
    assert fake_telegram.calls("getFile") == []  # never fetched



def test_files_of_turns_held_while_paused_reach_the_agent_after_resume(
        serve, fake_telegram, file_agent: FileAgent) -> None:
    from conftest import OPERATOR, wait_until

    server = serve(config(fake_telegram.base_url, file_agent.url))
    first = server.wait_turn(post(server, update(message("hello"))).json()["turn_id"])
    session = first["session_id"]
    assert server.api("POST", f"/api/sessions/{session}/pause", token=OPERATOR).status_code == 200
    held = []
    for name, data in (("one.pdf", b"first file"), ("two.pdf", b"second file")):
        file_id = fake_telegram.add_file(data, name)
        msg = message(None, caption=name, document={
            "file_id": file_id, "file_unique_id": name, "file_name": name,
            "mime_type": "application/pdf", "file_size": len(data)})
        held.append(post(server, update(msg)).json()["turn_id"])
    wait_until(lambda: all(server.turn(t)["status"] == "held" for t in held) or None)
    assert server.api("POST", f"/api/sessions/{session}/resume", token=OPERATOR).status_code == 200
    wait_until(lambda: server.turn(held[-1])["status"] == "delivered")
    assert file_agent.downloads == {"one.pdf": b"first file", "two.pdf": b"second file"}
