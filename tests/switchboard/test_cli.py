"""The `switchboard` command as an operator runs it: real subprocesses against a SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import OPERATORS_YAML, Server, free_port, slack_config, slack_message

EXAMPLE = Path(__file__).resolve().parents[2] / "bindings.yaml"


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any Switchboard, Slack or Telegram settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "TELEGRAM_", "SWITCHBOARD_"))
           and k not in {"FORCE_COLOR", "CLICOLOR_FORCE"}}
    return {**env, "NO_COLOR": "1", **extra}


def switchboard(database_url: str, cwd: Path, *args: str,
                columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run the CLI; Rich lays tables out for `columns` (what it assumes when output is a pipe
    is 80)."""
    env = clean_env(SWITCHBOARD_DATABASE_URL=database_url, COLUMNS=str(columns))
    return subprocess.run([sys.executable, "-m", "switchboard", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_db_upgrade_is_idempotent_and_an_empty_database_lists_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for _ in range(2):
        result = switchboard(url, tmp_path, "db", "upgrade")
        assert result.returncode == 0, result.stderr
        assert "database is up to date" in result.stdout
    assert (tmp_path / "fresh.db").exists()
    assert as_json(switchboard(url, tmp_path, "turns", "list", "--json")) == {
        "turns": [], "next_cursor": None}


def test_turns_list_table_shows_whole_turn_ids_at_80_columns(tmp_path, sqlite_url):
    from channels.messages import InboundMessage
    from switchboard.clock import Clock
    from switchboard.store import Store, create_engine

    async def record() -> str:
        engine = create_engine(sqlite_url)
        store = Store(engine, Clock())
        try:
            message = InboundMessage(provider="slack", account="slack-acme", event_id="Ev0W",
                                     conversation="C0SUPPORT", kind="channel", sender="U0ALICE",
                                     text="a long enough message to need some room")
            return (await store.turns.record(message, {})).turn_id
        finally:
            store.close()
            await engine.dispose()

    turn_id = asyncio.run(record())
    result = switchboard(sqlite_url, tmp_path, "turns", "list", columns=80)
    assert result.returncode == 0, result.stderr
    assert turn_id in result.stdout


# --- against a running server --------------------------------------------------------------


@pytest.fixture
def slack_server(tmp_path: Path, sqlite_url: str, fake_slack: Any) -> Iterator[Server]:
    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url, name="triage-slack") + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        yield server
    finally:
        server.stop()


def test_cli_tells_the_whole_story_of_a_delivered_turn(slack_server, fake_slack, sqlite_url,
                                                       tmp_path):
    server = slack_server
    config = str(tmp_path / "bindings.yaml")
    root = "1700000000.000100"
    mention = slack_message("<@UBOT> hello from the cli test", etype="app_mention", ts=root)
    response = server.slack_event("slack-acme", mention, event_id="Ev0CLI")
    assert response.status_code == 200, response.text
    turn_id = response.json()["turn_id"]
    assert server.wait_turn(turn_id)["status"] == "delivered"
    quiet = server.slack_event("slack-acme", slack_message("just chatting")).json()["turn_id"]
    assert server.wait_turn(quiet)["status"] == "ignored"
    bad = server.slack_event("slack-acme", slack_message("<@UBOT> x", etype="app_mention"),
                             secret="not-the-secret")
    assert bad.status_code == 401
    [post] = fake_slack.posts_to("C0SUPPORT")
    session_id = server.turn(turn_id)["session_id"]
    # (serve writes the counts each second)
    server.call(server.runtime.store.accounts.flush_rejected())

    commands = {
        "list": ("turns", "list", "--json"),
        "delivered": ("turns", "list", "--status", "delivered"),
        "show_json": ("turns", "show", turn_id, "--json"),
        "show": ("turns", "show", turn_id),
        "sessions": ("sessions", "list", "--json"),
        "session": ("sessions", "show", session_id, "--json"),
        "accounts": ("accounts", "--config", config, "--json"),
        "nope": ("turns", "show", "turn_nope"),
    }
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(switchboard, sqlite_url, tmp_path, *args)
                   for name, args in commands.items()}
        out = {name: future.result() for name, future in futures.items()}

    listed = as_json(out["list"])
    assert [t["id"] for t in listed["turns"]] == [quiet, turn_id]  # newest first
    assert listed["next_cursor"] is None
    delivered = out["delivered"]
    assert delivered.returncode == 0, delivered.stderr
    assert turn_id in delivered.stdout and quiet not in delivered.stdout
    assert "delivered" in delivered.stdout and "ignored" not in delivered.stdout

    turn = as_json(out["show_json"])
    assert turn["id"] == turn_id
    assert (turn["provider"], turn["account"], turn["event_id"]) == ("slack", "slack-acme",
                                                                      "Ev0CLI")
    assert (turn["conversation"], turn["sender"]) == ("C0SUPPORT", "U0ALICE")
    assert turn["status"] == "delivered"
    assert turn["binding"] == "triage-slack"
    assert turn["agent"] == "triager"
    assert "mentions the bot" in turn["route_reason"]
    assert turn["session_id"] == session_id and session_id.startswith("ses_")
    assert turn["reply_text"] == post["text"] and "hello from the cli test" in post["text"]
    assert turn["provider_message_id"] == post["ts"]
    assert (turn["delivery_status"], turn["delivery_attempts"]) == ("delivered", 1)
    assert turn["error"] is None
    assert [e["name"] for e in turn["events"]] == [
        "received", "routed", "session_created", "agent_replied", "delivered"]
    assert all(e["at"] for e in turn["events"])

    shown = out["show"]
    assert shown.returncode == 0, shown.stderr
    assert turn_id in shown.stdout and "delivered" in shown.stdout
    assert "timeline" in shown.stdout and "agent_replied" in shown.stdout

    [session] = as_json(out["sessions"])["sessions"]
    assert (session["id"], session["agent"]) == (session_id, "triager")
    detail = as_json(out["session"])
    assert detail["id"] == session_id
    assert [m["role"] for m in detail["transcript"]][-2:] == ["user", "agent"]
    assert detail["transcript"][-1]["text"] == post["text"]

    [account] = as_json(out["accounts"])["accounts"]
    assert account["name"] == "slack-acme" and account["enabled"] is True
    assert account["disabled_reason"] is None
    assert account["last_inbound_at"] is not None
    assert account["last_outbound_at"] is not None
    assert account["rejected"] == {"bad_signature": 1}

    nope = out["nope"]
    assert nope.returncode == 1
    assert nope.stderr.strip() == "no turn turn_nope"
    assert nope.stdout == ""


# --- `switchboard serve` as a real process -------------------------------------------------


class Process:
    """`switchboard serve` in a subprocess; stdout read line by line, stderr to a file."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str]) -> None:
        self.log = (cwd / f"serve-{time.monotonic_ns()}.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "switchboard", "serve", *args],
                                     cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True)
        self.log.close()  # the child has its own copy
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 20) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.stdout.append(line)
            if found := re.search(pattern, line):
                return found
        return None

    def printed(self) -> list[str]:
        """Everything the process printed, once it has exited."""
        self.reader.join(10)
        while not self.lines.empty():
            self.stdout.append(self.lines.get())
        return self.stdout

    def wait_healthy(self, url: str, timeout: float = 20) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stderr()
            try:
                return httpx.get(f"{url}/healthz", timeout=2)
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"serve did not answer /healthz\n{self.stderr()}")

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self) -> str:
        return Path(self.log.name).read_text()


def test_serve_generates_an_admin_token_once_and_stops_cleanly(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "bindings.yaml")
    port, smtp_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = clean_env(SWITCHBOARD_DATABASE_URL=f"sqlite:///{tmp_path / 'serve.db'}")
    args = ("--config", "bindings.yaml", "--port", str(port), "--smtp-port", str(smtp_port))

    first = Process(tmp_path, *args, env=env)
    try:
        found = first.wait_for(r"\b(sb_[A-Za-z0-9_-]{20,})")
        assert found, f"no admin token printed\n{''.join(first.stdout)}\n{first.stderr()}"
        token = found.group(1)
        health = first.wait_healthy(url)
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "accounts": {
            "slack-acme": "disabled", "tg": "disabled", "mail": "enabled"},
            "queue": {"memory": 0, "database": 0, "refilled": 0}}

        with httpx.Client(base_url=url, timeout=10) as http:
            authorized = http.get("/api/turns", headers={"Authorization": f"Bearer {token}"})
            assert authorized.status_code == 200
            assert authorized.json() == {"turns": [], "next_cursor": None}
            assert http.get("/api/turns").status_code == 401
            wrong = http.get("/api/turns", headers={"Authorization": "Bearer sb_wrong"})
            assert wrong.status_code == 401

            webhook = http.post("/slack/slack-acme/events", content=b"{}",
                                headers={"Content-Type": "application/json"})
            assert webhook.status_code == 503
            assert webhook.json()["error"] == "account slack-acme is disabled"  # not why

        # uvicorn finishes shutting down, then re-raises SIGTERM: a clean stop by convention
        assert first.stop() in (0, -signal.SIGTERM), first.stderr()
    finally:
        first.kill()
    log = first.stderr()
    assert "Application shutdown complete" in log and "Finished server process" in log, log
    assert "Traceback" not in log, log
    assert "account slack-acme is disabled: bot_token is not set" in log
    assert token not in log  # the token is printed once, to stdout, never logged
    stored = (tmp_path / "serve.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("serve.db-*"))
    assert token.encode() not in stored  # only its hash is kept

    # A second start on the same database keeps the first token and prints none.
    second = Process(tmp_path, *args, env=env)
    try:
        second.wait_healthy(url)
        reply = httpx.get(f"{url}/api/turns", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200
        assert second.stop() in (0, -signal.SIGTERM), second.stderr()
    finally:
        second.kill()
    assert not any("sb_" in line for line in second.printed()), second.stdout


def test_session_actions_from_the_cli(tmp_path, sqlite_url, fake_slack):
    from conftest import OPERATORS_YAML, Server, slack_config, slack_message

    config = tmp_path / "bindings.yaml"
    config.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(config, sqlite_url).start()
    try:
        event = slack_message("hello", channel="D0ALICE", channel_type="im")
        sid = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])[
            "session_id"]

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "switchboard", "sessions", *args],
                                  capture_output=True, text=True, cwd=tmp_path,
                                  env={**os.environ, "SWITCHBOARD_DATABASE_URL": sqlite_url})

        assert cli("pause", sid).returncode == 0
        assert server.api("GET", f"/api/sessions/{sid}").json()["state"] == "paused"
        held = server.wait_turn(server.slack_event("slack-acme", slack_message(
            "while paused", channel="D0ALICE", channel_type="im")).json()["turn_id"])
        assert held["status"] == "held"
        assert cli("resume", sid).returncode == 0
        # the running serve answers what was held within a sweep
        assert server.wait_turn(held["id"], until=lambda t: t["status"] == "delivered",
                                timeout=10)["status"] == "delivered"
        refused = cli("delete", sid)
        assert refused.returncode == 1 and "only ended sessions" in refused.stderr
        assert cli("end", sid).returncode == 0
        again = cli("end", sid)
        assert again.returncode == 0 and "already ended" in again.stdout
        assert cli("delete", sid).returncode == 0
        assert server.api("GET", f"/api/sessions/{sid}").status_code == 404
    finally:
        server.stop()
