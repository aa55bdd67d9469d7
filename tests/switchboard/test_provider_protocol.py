"""The provider protocol from the outside: a provider is one module plus one registry line, and
the webhooks, the config, the OpenAPI schema, the console's lists and the refusals all follow
from the registry, not from names written into Switchboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from conftest import SIGNING_SECRET, VIEWER, slack_config, slack_message, slack_signature
from fakes.webchat_api import FakeWebchatAPI
from switchboard.providers import PROVIDERS
from webchat_provider import PROVIDER as WEBCHAT

SRC = Path(__file__).resolve().parents[2] / "src"
TOKEN = "wc-secret-token-1"


def webchat_config(api_url: str) -> str:
    return f"""
agents:
  triager: {{handler: echo}}
accounts:
  room:
    provider: webchat
    token: {TOKEN}
    api_url: {api_url}
bindings:
  - {{name: triage-room, agent: triager, account: room}}
delivery: {{max_attempts: 1}}
"""


def webchat_event(server: Any, event: dict[str, Any], token: str = TOKEN) -> httpx.Response:
    return server.http.post("/webchat/room/events", content=json.dumps(event).encode(),
                            headers={"X-Webchat-Token": token})


def test_a_new_provider_is_its_module_and_one_registry_line(serve):
    registry = {**PROVIDERS, WEBCHAT.name: WEBCHAT}
    with FakeWebchatAPI() as fake:
        server = serve(webchat_config(fake.api_url), registry)
        answer = webchat_event(server, {"id": "e1", "room": "r1", "user": "u1",
                                        "text": "hello", "thread": "t1"})
        assert answer.status_code == 200, answer.text
        turn = server.wait_turn(answer.json()["turn_id"])
        assert (turn["status"], turn["provider"], turn["reply_text"]) == (
            "delivered", "webchat", "echo: hello")
        assert fake.posts == [{"text": "echo: hello", "thread": "t1", "reply_to": "e1",
                               "room": "r1", "auth": f"Bearer {TOKEN}"}]
        assert turn["provider_message_id"] == "m1"

        fake.failures.append((404, "room_not_found"))
        lost = webchat_event(server, {"id": "e2", "room": "gone", "user": "u1", "text": "hi"})
        failed = server.wait_turn(lost.json()["turn_id"])
        assert failed["status"] == "failed" and failed["error"] == "room_not_found"

        forged = webchat_event(server, {"id": "e3", "room": "r1", "user": "u1", "text": "x"},
                               token="wrong")
        assert forged.status_code == 403
        assert forged.json() == {"error": "X-Webchat-Token does not match"}
        assert "x-slack-no-retry" not in forged.headers
        server.call(server.runtime.store.accounts.flush_rejected())
        [room] = server.api("GET", "/api/accounts", token=VIEWER).json()["accounts"]
        assert room["rejected"] == {"bad_secret": 1} and room["capabilities"] == ["threads"]
        assert TOKEN not in json.dumps(room)

        listed = server.api("GET", "/api/providers", token=VIEWER).json()["providers"]
        assert {"name": "webchat", "description": "Webchat rooms (an example)",
                "capabilities": ["threads"], "webhook_actions": ["events"]} in listed
        assert "/webchat/{account}/events" in server.http.get("/openapi.json").json()["paths"]


def test_the_config_knows_the_providers_of_its_registry(tmp_path):
    from switchboard.config import load_config
    from switchboard.errors import ConfigError

    path = tmp_path / "bindings.yaml"
    path.write_text("accounts:\n  room:\n    provider: webchat\n    token: t\n")
    try:
        load_config(path)
    except ConfigError as error:
        assert str(error) == (f"{path}:3: accounts.room.provider: unknown provider 'webchat'; "
                              "use one of slack, telegram, email")
    else:
        raise AssertionError("webchat is not in the default registry")
    loaded = load_config(path, providers={**PROVIDERS, WEBCHAT.name: WEBCHAT})
    assert loaded.accounts["room"].token == "t"
    path.write_text("accounts:\n  room:\n    provider: webchat\n    tokn: t\n")
    try:
        load_config(path, providers={**PROVIDERS, WEBCHAT.name: WEBCHAT})
    except ConfigError as error:
        assert str(error) == (f"{path}:4: accounts.room.tokn: unknown key (a typo?); it would "
                              "be silently ignored otherwise")


def test_providers_and_accounts_say_what_each_provider_can_do(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    assert server.http.get("/api/providers").status_code == 401
    listed = server.api("GET", "/api/providers", token=VIEWER).json()["providers"]
    assert [p["name"] for p in listed] == ["slack", "telegram", "email", "api"]
    by_name = {p["name"]: p for p in listed}
    everything = ["buttons", "edit", "files", "stream", "threads", "typing"]
    assert by_name["slack"]["capabilities"] == everything
    assert by_name["telegram"]["capabilities"] == everything
    assert by_name["email"]["capabilities"] == ["files", "threads"]
    assert by_name["slack"]["webhook_actions"] == ["events", "commands", "interactions"]
    assert by_name["telegram"]["webhook_actions"] == ["webhook"]
    assert by_name["email"]["webhook_actions"] == [] == by_name["api"]["webhook_actions"]
    [account] = server.api("GET", "/api/accounts", token=VIEWER).json()["accounts"]
    assert account["capabilities"] == everything
    paths = server.http.get("/openapi.json").json()["paths"]
    assert {"/slack/{account}/events", "/slack/{account}/commands",
            "/telegram/{account}/webhook"} <= set(paths)


def test_refusals_carry_their_own_providers_headers(serve, fake_slack, fake_telegram,
                                                    monkeypatch):
    monkeypatch.delenv("UNSET_FOR_THIS_TEST", raising=False)
    server = serve(f"""
agents:
  triager: {{handler: echo}}
accounts:
  slack-acme: {{provider: slack, bot_token: xoxb-test, signing_secret: {SIGNING_SECRET},
               api_url: "{fake_slack.api_url}"}}
  slack-off: {{provider: slack, bot_token: "${{UNSET_FOR_THIS_TEST}}",
              signing_secret: {SIGNING_SECRET}}}
  tg: {{provider: telegram, token: "123:ABC", webhook_secret: tg-secret,
       base_url: "{fake_telegram.base_url}"}}
  tg-off: {{provider: telegram, token: "${{UNSET_FOR_THIS_TEST}}", webhook_secret: tg-secret}}
""")
    forged = server.slack_event("slack-acme", slack_message("hi"), secret="wrong-secret")
    disabled = server.http.post("/slack/slack-off/events", content=b"{}")
    too_big = server.http.post("/slack/slack-acme/events", content=b"x" * (1024 * 1024 + 1))
    for answer, status in ((forged, 401), (disabled, 503), (too_big, 413)):
        assert answer.status_code == status and answer.headers["x-slack-no-retry"] == "1"
    wrong = server.http.post("/telegram/tg/webhook", json={"update_id": 1},
                             headers={"X-Telegram-Bot-Api-Secret-Token": "nope"})
    off = server.http.post("/telegram/tg-off/webhook", json={"update_id": 1})
    unknown = server.http.post("/telegram/nobody/webhook", json={"update_id": 1})
    for answer, status in ((wrong, 403), (off, 503), (unknown, 404)):
        assert answer.status_code == status, answer.text
        assert "x-slack-no-retry" not in answer.headers


def test_only_the_registry_names_a_provider_and_the_console_asks_for_them():
    modules = [*SRC.glob("switchboard/*.py"), *SRC.glob("switchboard/*/*.py")]
    naming = sorted(str(p.relative_to(SRC)) for p in modules
                    if re.search("slack|telegram", p.read_text(), re.IGNORECASE))
    assert naming == ["switchboard/providers.py"]
    for script in (SRC / "switchboard" / "console_assets").glob("*.js"):
        listed = re.findall(r"""["'`](slack|telegram|email)["'`]""", script.read_text(),
                            re.IGNORECASE)
        assert listed == [], f"{script.name} names providers: {listed}"


def test_slack_slash_commands_are_answered_by_the_application(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url).replace(
        "    api_url:", "    slash_command: /agent\n    api_url:"))

    def slash(text: str, command: str = "/agent") -> dict[str, Any]:
        body = f"command={command}&text={text}&channel_id=D0ALICE&user_id=U0ALICE".encode()
        answer = server.http.post("/slack/slack-acme/commands", content=body, headers={
            **slack_signature(body), "Content-Type": "application/x-www-form-urlencoded"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert slash("help") == {"response_type": "ephemeral",
                             "text": "Usage: /agent new | /agent end | /agent pause | "
                                     "/agent resume | /agent agents | /agent transfer NAME"}
    assert slash("new", command="/other")["text"] == "/other is not a command this app knows."
    assert slash("NEW  please")["text"] == "Your next message starts a new conversation."
