"""No secret leaves Switchboard: not in a webhook's answer, the operator API, the CLI, the
database, or a log line; even when a provider's error text quotes its URL, and so the token."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import OPERATORS_YAML, SIGNING_SECRET, VIEWER, ServeProcess, run_cli
from fakes.telegram_api import FakeTelegramAPI

# Shaped like real ones: a Telegram token is "<bot id>:<35 characters>".
TG_TOKEN = "7413956802:AAHk3ZxQv9Lm2Wc8Tn4Rp6Yd1Bf5Gs0Je7U"
TG_SECRET = "tg-webhook-secret_5f0c2a9e"
SLACK_TOKEN = "xoxb-2210987654321-4455667788990-q9WkX2mZr7Lp3VbN8cTy5HsD"
METRICS_TOKEN = "metrics-scrape-token-81c4e2"
SECRETS = (TG_TOKEN, TG_SECRET, SLACK_TOKEN, SIGNING_SECRET, METRICS_TOKEN)


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegramAPI]:
    with FakeTelegramAPI() as fake:
        yield fake


def config(telegram_url: str, slack_url: str = "http://127.0.0.1:9/api/",
           max_attempts: int = 6) -> str:
    return f"""
agents:
  triager: {{handler: echo}}
accounts:
  tg:
    provider: telegram
    token: "{TG_TOKEN}"
    webhook_secret: {TG_SECRET}
    base_url: {telegram_url}
  slack-acme:
    provider: slack
    bot_token: {SLACK_TOKEN}
    signing_secret: {SIGNING_SECRET}
    api_url: {slack_url}
bindings:
  - {{agent: triager, account: tg}}
  - {{agent: triager, account: slack-acme}}
delivery: {{max_attempts: {max_attempts}, backoff: 0.05}}
metrics_token: {METRICS_TOKEN}
"""


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}:\n{text}"
    assert "AAHk3ZxQv9Lm2Wc8Tn4Rp6Yd1Bf5Gs0Je7U" not in text, where  # the token without its id


@pytest.mark.parametrize("status", [401, 404])
def test_a_proxy_page_for_getme_leaks_the_token_nowhere(serve, fake_telegram, caplog, status,
                                                        database_url, tmp_path):
    caplog.set_level(logging.INFO)
    fake_telegram.fail_next_with_page("getMe", status)
    server = serve(config(fake_telegram.base_url))

    webhook = server.http.post("/telegram/tg/webhook", json={"update_id": 1},
                               headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert webhook.status_code == 503
    assert webhook.json() == {"error": "account tg is not running"}  # and never why

    accounts = server.api("GET", "/api/accounts", token=VIEWER)
    assert accounts.status_code == 200
    [tg] = [a for a in accounts.json()["accounts"] if a["name"] == "tg"]
    assert tg["status"] == "failing"
    assert tg["error"].startswith("getMe failed: ")  # operators still learn why...
    assert "[redacted]" in tg["error"]  # ...with the token taken out
    bindings = server.api("GET", "/api/bindings", token=VIEWER)
    assert bindings.status_code == 200
    cli_accounts = run_cli(database_url, tmp_path, "accounts", "--config",
                       str(tmp_path / "bindings-0.yaml"), "--json")
    assert cli_accounts.returncode == 0, cli_accounts.stderr

    for where, text in (("the 503", webhook.text), ("/api/accounts", accounts.text),
                        ("/api/bindings", bindings.text), ("accounts --json", cli_accounts.stdout),
                        ("the log", caplog.text)):
        assert_no_secret(where, text)
    assert "getMe failed" in caplog.text  # the error is logged, redacted
    assert "HTTP Request:" not in caplog.text  # httpx's line per request (URL and all)


def test_serve_logs_no_secret_at_info(fake_telegram, tmp_path, sqlite_url):
    fake_telegram.fail_next_with_page("getMe", 404)
    path = tmp_path / "bindings.yaml"
    path.write_text(config(fake_telegram.base_url) + OPERATORS_YAML)
    server = ServeProcess(path, sqlite_url, tmp_path, log_level="info")
    try:
        answer = server.http.post("/telegram/tg/webhook", json={"update_id": 1},
                                  headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
        assert answer.status_code == 503
        assert server.http.get("/metrics").status_code == 401
    finally:
        server.stop()
    log = Path(server.log.name).read_text(errors="replace")
    assert "getMe failed" in log and "Application startup complete" in log, log
    assert_no_secret("serve's log", log)
    assert "HTTP Request:" not in log


def test_a_delivery_error_quoting_the_url_is_stored_and_shown_without_the_token(
        serve, fake_telegram, database_url, tmp_path):
    server = serve(config(fake_telegram.base_url, max_attempts=1))
    fake_telegram.fail_next_with_page("sendMessage", 502)
    update = {"update_id": 77, "message": {
        "message_id": 5, "date": 1700000000, "chat": {"id": 42, "type": "private"},
        "from": {"id": 7, "is_bot": False, "first_name": "Alice"}, "text": "hello"}}
    response = server.http.post("/telegram/tg/webhook", json=update,
                                headers={"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})
    assert response.status_code == 200, response.text
    turn_id = response.json()["turn_id"]
    turn = server.wait_turn(turn_id)
    assert turn["status"] == "failed"
    assert "Bad Gateway" in turn["error"] and "/bot[redacted]/sendMessage" in turn["error"]
    shown = run_cli(database_url, tmp_path, "turns", "show", turn_id, "--json")
    assert shown.returncode == 0, shown.stderr
    accounts = server.api("GET", "/api/accounts")
    for where, text in (("/api/turns/{id}", json.dumps(turn)), ("turns show", shown.stdout),
                        ("/api/accounts", accounts.text)):
        assert_no_secret(where, text)
    if database_url.startswith("sqlite"):
        stored = b"".join(p.read_bytes() for p in tmp_path.glob("switchboard.db*"))
        assert TG_TOKEN.encode() not in stored


def test_a_disabled_accounts_503_does_not_say_why(serve, monkeypatch):
    monkeypatch.delenv("NOT_SET_SLACK_TOKEN", raising=False)
    server = serve("""
accounts:
  slack-off:
    provider: slack
    bot_token: ${NOT_SET_SLACK_TOKEN}
    signing_secret: whatever-secret
""")
    answer = server.http.post("/slack/slack-off/events", content=b"{}",
                              headers={"Content-Type": "application/json"})
    assert answer.status_code == 503
    assert answer.json() == {"error": "account slack-off is disabled"}
    [row] = server.api("GET", "/api/accounts").json()["accounts"]
    assert row["disabled_reason"] == "bot_token is not set (environment variable " \
                                     "NOT_SET_SLACK_TOKEN)"
