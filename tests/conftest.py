"""Fixtures that build real things: a database, a running Switchboard on a port, provider fakes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from channels.adapter import Provider
from fakes.slack_api import FakeSlackAPI
from fakes.telegram_api import FakeTelegramAPI
from switchboard import db
from switchboard.app import create_app
from switchboard.config import load_config
from switchboard.providers import PROVIDERS
from switchboard.runtime import Runtime

ADMIN = "admin-token-for-tests"
OPERATOR = "operator-token-for-tests"
VIEWER = "viewer-token-for-tests"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
POSTGRES_URL = os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


def _postgres_unavailable() -> str | None:
    """Why PostgreSQL tests cannot run here, or None. In CI they must run, so CI fails instead."""
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.Error as error:
        reason = f"PostgreSQL at {POSTGRES_URL} is unreachable ({str(error).strip()[:120]})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
    return reason + "; set SWITCHBOARD_TEST_POSTGRES_URL to run them"
OPERATORS_YAML = f"""
operators:
  - {{name: root, role: admin, token: {ADMIN}}}
  - {{name: ops, role: operator, token: {OPERATOR}}}
  - {{name: watcher, role: viewer, token: {VIEWER}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres_database(template: str | None = None) -> Iterator[str]:
    import psycopg

    name = f"sb_test_{secrets.token_hex(4)}"
    admin = POSTGRES_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        # A commit does not wait for the log's fsync (3 ms here, 0.9 ms without): a test
        # database outlives no crash of the PostgreSQL server, and killing a serve (which the
        # tests do) loses nothing committed either way.
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One database file migrated to the head, once per test process: each test gets a copy
    (the same schema `db.upgrade` gives, without running every migration for every test)."""
    path = tmp_path_factory.mktemp("template") / "switchboard.db"
    db.upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # everything in the main file, nothing in the log
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str | None]:
    """A PostgreSQL database migrated to the head, once per test process, that each test's
    database is created from (CREATE DATABASE … TEMPLATE); None when PostgreSQL is away."""
    if _postgres_unavailable() is not None:
        yield None
        return
    import psycopg

    name = f"sb_template_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db.upgrade(POSTGRES_URL.rsplit("/", 1)[0] + "/" + name)
        yield name
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _sqlite_copy(template: Path, tmp_path: Path) -> str:
    target = tmp_path / "switchboard.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database: SQLite always; PostgreSQL when SWITCHBOARD_TEST_POSTGRES_URL
    is set (CI sets it)."""
    if request.param == "sqlite":
        yield _sqlite_copy(request.getfixturevalue("migrated_sqlite"), tmp_path)
        return
    if (reason := _postgres_unavailable()) is not None:
        pytest.skip(reason)
    yield from _postgres_database(request.getfixturevalue("migrated_postgres"))


@pytest.fixture
def sqlite_url(tmp_path: Path, migrated_sqlite: Path) -> str:
    return _sqlite_copy(migrated_sqlite, tmp_path)


class Server:
    """Switchboard's ASGI app served by uvicorn on a free port, in a thread of its own."""

    def __init__(self, config_path: Path, database_url: str,
                 providers: Mapping[str, Provider] = PROVIDERS) -> None:
        self.smtp_port = free_port()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runtime = Runtime(load_config(config_path, strict_env=False, providers=providers),
                               database_url=database_url, sweep_interval=0.2,
                               smtp_port=self.smtp_port, providers=providers,
                               listen_url=self.url,
                               files_root=str(config_path.parent / "files"))
        # An open live-event stream is cut 2 s into a stop (`serve` waits 10 s); otherwise it
        # would hold the stop until the join in stop() gives up.
        self.server = uvicorn.Server(uvicorn.Config(
            create_app(self.runtime), host="127.0.0.1", port=self.port, log_level="warning",
            lifespan="on", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> Server:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("switchboard did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.http.close()

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the server's own event loop (time travel, sweeps)."""
        return asyncio.run_coroutine_threadsafe(coro, self.runtime.loop).result(20)

    def travel(self, **delta: float) -> None:
        """Move Switchboard's clock forward, then run the session sweep."""
        from datetime import timedelta

        self.runtime.clock.advance(timedelta(**delta))
        self.call(self.runtime.sweep_sessions())

    def api(self, method: str, path: str, token: str = ADMIN, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)

    def turn(self, turn_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/api/turns/{turn_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_turn(self, turn_id: str, until: Callable[[dict[str, Any]], bool] | None = None,
                  timeout: float = 10.0) -> dict[str, Any]:
        """Poll the API until the turn is settled (or `until` holds)."""
        done = until or (lambda t: t["status"] != "pending")
        deadline = time.time() + timeout
        while True:
            turn = self.turn(turn_id)
            if done(turn) or time.time() > deadline:
                return turn
            time.sleep(0.05)

    def turns(self, **filters: Any) -> list[dict[str, Any]]:
        response = self.api("GET", "/api/turns", params=filters)
        assert response.status_code == 200, response.text
        return response.json()["turns"]

    def slack_event(self, account: str, event: dict[str, Any], *, event_id: str | None = None,
                    secret: str = SIGNING_SECRET, timestamp: int | None = None,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        payload = {"token": "legacy", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                   "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
                   "event_time": int(time.time()), "event": event}
        return self.slack_post(account, json.dumps(payload).encode(), secret=secret,
                               timestamp=timestamp, headers=headers)

    def slack_post(self, account: str, body: bytes, *, secret: str = SIGNING_SECRET,
                   timestamp: int | None = None,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        return self.http.post(f"/slack/{account}/events", content=body,
                              headers={**slack_signature(body, secret, timestamp),
                                       "Content-Type": "application/json", **(headers or {})})


def wait_until(probe: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `probe` until it returns something true, and return that (AssertionError when
    `timeout` seconds pass first)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := probe():
            return found
        time.sleep(0.05)
    raise AssertionError(f"nothing came within {timeout:g}s")


def slack_signature(body: bytes, secret: str = SIGNING_SECRET,
                    timestamp: int | None = None) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def slack_message(text: str, *, channel: str = "C0SUPPORT", user: str = "U0ALICE",
                  etype: str = "message", channel_type: str = "channel",
                  ts: str | None = None, **more: Any) -> dict[str, Any]:
    event = {"type": etype, "channel": channel, "user": user, "text": text,
             "ts": ts or f"{time.time():.6f}", **more}
    if etype == "message":
        event["channel_type"] = channel_type
    return event


@pytest.fixture
def fake_slack() -> Iterator[FakeSlackAPI]:
    with FakeSlackAPI() as fake:
        yield fake


@pytest.fixture
def file_agent() -> Iterator[Any]:
    """An http agent that downloads the turn's files by their links and answers with files."""
    from fakes.agents import FileAgent

    with FileAgent() as agent:
        yield agent


@pytest.fixture
def mail_relay() -> Iterator[tuple[Any, int]]:
    """The outbound SMTP relay (`fakes.mail.Relay`) and its port."""
    from fakes.mail import running_relay

    with running_relay() as running:
        yield running


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegramAPI]:
    """A fake Bot API whose bot is 999, @switchboard_bot."""
    with FakeTelegramAPI(bot_id=999, username="switchboard_bot") as fake:
        yield fake


@pytest.fixture
def serve(tmp_path: Path, database_url: str) -> Iterator[Callable[[str], Server]]:
    """Start Switchboard with the given bindings.yaml text (operators are added)."""
    servers: list[Server] = []

    def start(config_text: str, providers: Mapping[str, Provider] = PROVIDERS) -> Server:
        path = tmp_path / f"bindings-{len(servers)}.yaml"
        path.write_text(config_text + OPERATORS_YAML)
        server = Server(path, database_url, providers).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def yaml_value(value: Any) -> str:
    """`value` as YAML flow text: a word YAML reads back as the same string stays bare, anything
    else is written as JSON (which YAML reads)."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {yaml_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(item) for item in value) + "]"
    if isinstance(value, str) and re.fullmatch(r"[\w./-]+", value) \
            and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def config_yaml(*, agents: Mapping[str, Mapping[str, Any]],
                accounts: Mapping[str, Mapping[str, Any]],
                bindings: Sequence[Mapping[str, Any]],
                sections: Mapping[str, Any] | None = None) -> str:
    """bindings.yaml text from plain values, one key a line in accounts and bindings (so a test
    can find a key's line, or insert one before it); `sections` are top-level keys such as
    `delivery` or `files`."""
    lines = ["", "agents:", *(f"  {name}: {yaml_value(spec)}" for name, spec in agents.items()),
             "accounts:"]
    for name, settings in accounts.items():
        lines += [f"  {name}:", *(f"    {key}: {yaml_value(v)}" for key, v in settings.items())]
    lines.append("bindings:")
    for binding in bindings:
        rows = [f"{key}: {yaml_value(v)}" for key, v in binding.items()]
        lines += [f"  - {rows[0]}", *(f"    {row}" for row in rows[1:])]
    lines += [f"{key}: {yaml_value(v)}" for key, v in (sections or {}).items()]
    return "\n".join(lines) + "\n"


def slack_config(api_url: str, *, agents: Mapping[str, Mapping[str, Any]] | None = None,
                 account_settings: Mapping[str, Any] | None = None,
                 bindings: Sequence[Mapping[str, Any]] | None = None,
                 sections: Mapping[str, Any] | None = None, **binding: Any) -> str:
    """The Slack account `slack-acme` on the fake Slack at `api_url` (`account_settings` added
    to it), with an echo agent `triager` bound to it by default; binding keys override the
    default binding's, or `bindings` replaces it; `agents` replaces the echo agent."""
    if bindings is None:
        bindings = [{"agent": "triager", "account": "slack-acme", "dm": True, "mentions": True,
                     **binding}]
    elif binding:
        raise TypeError(f"give `bindings` or one binding's keys, not both: {sorted(binding)}")
    account = {"provider": "slack", "bot_token": "xoxb-test", "signing_secret": SIGNING_SECRET,
               "api_url": api_url, **(account_settings or {})}
    return config_yaml(agents=agents or {"triager": {"handler": "echo", "model": "small"}},
                       accounts={"slack-acme": account}, bindings=bindings, sections=sections)


def mail_config(relay_port: int, *, account_settings: Mapping[str, Any] | None = None,
                sections: Mapping[str, Any] | None = None, **binding: Any) -> str:
    """The email account `mail` (domain agents.test, replies through the relay on
    `relay_port`) with an echo agent `triager` bound to it; binding keys are added."""
    account = {"provider": "email", "domain": "agents.test", "relay_host": "127.0.0.1",
               "relay_port": relay_port, **(account_settings or {})}
    return config_yaml(agents={"triager": {"handler": "echo"}}, accounts={"mail": account},
                       bindings=[{"agent": "triager", "account": "mail", **binding}],
                       sections=sections)


def sse_events(url: str, token: str, last_event_id: str | None = None
               ) -> Iterator[dict[str, Any]]:
    """Server-Sent Events as a client reads them: `id`, `event` and JSON `data` per event."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        current: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif not line and "event" in current:
                yield current
                current = {}


def read_sse(url: str, token: str, into: list[dict[str, Any]], stop: threading.Event,
             last_event_id: str | None = None) -> None:
    """Collect events into `into` until `stop` is set (checked as each event arrives, and when
    the server, stopping, cuts the stream)."""
    try:
        for event in sse_events(url, token, last_event_id):
            if stop.is_set():
                return
            into.append(event)
    except httpx.TransportError:
        if not stop.is_set():
            raise


def run_cli(database_url: str, cwd: Path, *args: str) -> Any:
    """`python -m switchboard ARGS` against `database_url`, as an operator runs it; returns the
    finished process (stdout, stderr, returncode)."""
    import subprocess
    import sys

    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": database_url, "NO_COLOR": "1",
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "switchboard", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


class ServeProcess:
    """`python -m switchboard serve` as a real process, to be killed and restarted."""

    def __init__(self, config_path: Path, database_url: str, cwd: Path,
                 log_level: str = "warning") -> None:
        import subprocess
        import sys

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(cwd / f"serve-{self.port}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "SWITCHBOARD_DATABASE_URL": database_url}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "serve", "--config", str(config_path),
             "--port", str(self.port), "--smtp-port", str(free_port()),
             "--log-level", log_level],
            cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=self.url, timeout=10)
        deadline = time.time() + 60
        while True:
            try:
                if self.http.get("/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or self.process.poll() is not None:
                self.stop()  # a serve that started too late is not left running
                raise RuntimeError(f"serve did not start: {self.logs()}")
            time.sleep(0.1)

    def logs(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def api(self, method: str, path: str, token: str = ADMIN, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except Exception:
                self.process.kill()
        self.http.close()
        self.log.close()
