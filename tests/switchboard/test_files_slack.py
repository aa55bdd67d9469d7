"""Files on Slack, end to end against the fake Web API: a shared file is downloaded from
`url_private` with the bot token after the acknowledgement (retried when Slack fails), a
`url_private` on a foreign host never gets the token, and the agent's files are uploaded into
the reply thread (getUploadURLExternal, the upload, completeUploadExternal), a failed upload
retried without holding the text back."""

from __future__ import annotations

import base64
import time

from conftest import slack_config, slack_message, wait_until
from fakes.agents import FileAgent

SHOT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 50


def config(api_url: str, agent_url: str) -> str:
    return slack_config(api_url, agents={"helper": {"handler": "http", "url": f"{agent_url}/turn"}},
                        bindings=[{"agent": "helper", "account": "slack-acme",
                                   "channels": ["C0SUPPORT"]}],
                        sections={"files": {"fetch_backoff": 0.05}, "delivery": {"backoff": 0.05}})


def test_a_shared_file_reaches_the_agent_and_its_file_lands_in_the_thread(
        serve, fake_slack, file_agent: FileAgent) -> None:
    server = serve(config(fake_slack.api_url, file_agent.url))
    shared = fake_slack.add_file(SHOT, "screenshot.png", "image/png")
    report = b"name,count\nalice,3\n" * 100
    file_agent.answer_files = [{"name": "report.csv", "type": "text/csv",
                           "content_base64": base64.b64encode(report).decode()}]
    fake_slack.download_failures = 1
    fake_slack.upload_failures = 1
    fake_slack.download_delay = 0.5
    event = slack_message("what is wrong here?", subtype="file_share", files=[shared])
    started = time.monotonic()
    response = server.slack_event("slack-acme", event)
    assert response.status_code == 200
    assert time.monotonic() - started < 0.5  # acknowledged before any download
    turn = server.wait_turn(response.json()["turn_id"])
    assert turn["status"] == "delivered", turn
    assert file_agent.downloads == {"screenshot.png": SHOT}
    assert all(r["auth"] == "Bearer xoxb-test" for r in fake_slack.file_requests)
    assert len(fake_slack.file_requests) == 2  # one failure, one retry
    [upload] = wait_until(lambda: fake_slack.uploads)
    assert upload["data"] == report and upload["filename"] == "report.csv"
    assert upload["channel"] == "C0SUPPORT" and upload["thread_ts"] == event["ts"]
    assert "Bearer" not in upload["auth"]  # the upload URL never gets the token
    story = wait_until(lambda: (t := server.turn(turn["id"])) and
                 any(e["name"] == "file_delivered" for e in t["events"]) and t)
    names = [e["name"] for e in story["events"]]
    assert "file_delivery_retry" in names and "file_fetch_retry" in names
    assert names.index("delivered") < names.index("file_delivered")  # text first
    assert fake_slack.posts_to("C0SUPPORT")[0]["text"] == "got 1 files"


def test_the_token_never_goes_to_a_foreign_host(serve, fake_slack, file_agent: FileAgent) -> None:
    server = serve(config(fake_slack.api_url, file_agent.url))
    foreign = fake_slack.add_file(b"secret", "x.txt", "text/plain",
                                  url_host="https://evil.example.com")
    event = slack_message("look", files=[foreign])
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    assert turn["status"] == "delivered"
    [skipped] = file_agent.requests[0]["turn"]["files_skipped"]
    assert "not a Slack file host" in skipped["reason"]
    assert fake_slack.file_requests == []
