"""An operator's first ten minutes with the CLI (issue 20): it finds the database serve uses
and never makes one up, filters refuse nonsense, `check` says what `serve` will do, and the
tables fit a terminal."""

from __future__ import annotations

import re

from conftest import OPERATORS_YAML, Server, slack_config
from operator_cli import EXAMPLE, cli, said

# --- 1. the database is the one serve uses, and never made up by a read ------------------


def test_read_commands_never_create_a_database_and_say_where_they_looked(tmp_path,
                                                                         monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for command in (("turns", "list"), ("sessions", "list"), ("inbox", "list"),
                    ("turns", "show", "turn_x")):
        result = cli(*command)
        assert result.exit_code == 1, said(result)
        assert f"no database at sqlite:///{elsewhere}/switchboard.db (beside bindings.yaml)" \
            in said(result)
        assert "--config" in said(result)
    assert list(elsewhere.iterdir()) == []  # nothing was created

    # a `database:` key, relative to the config's folder; --config on every command
    site = tmp_path / "site"
    site.mkdir()
    config = site / "bindings.yaml"
    config.write_text(EXAMPLE.read_text() + "database: sqlite:///data.db\n")
    made = cli("db", "upgrade", "--config", str(config))
    assert made.exit_code == 0, said(made)
    assert (site / "data.db").exists()
    where = f"sqlite:///{site}/data.db (from database: in {config})"
    assert where in said(made)
    empty = cli("turns", "list", "--config", str(config))
    assert empty.exit_code == 0, said(empty)
    assert said(empty) == f"no turns in {where}"
    filtered = cli("turns", "list", "--config", str(config), "--status", "failed")
    assert said(filtered) == f"no turns match status=failed in {where}"
    sessions = cli("sessions", "list", "-c", str(config), "--state", "live")
    assert said(sessions) == f"no sessions match state=live in {where}"
    assert list(elsewhere.iterdir()) == []

    # SWITCHBOARD_DATABASE_URL wins over both, as in serve
    url = f"sqlite:///{tmp_path / 'env.db'}"
    overridden = cli("turns", "list", "--config", str(config), env={
        "SWITCHBOARD_DATABASE_URL": url})
    assert overridden.exit_code == 1
    assert f"no database at {url} (from SWITCHBOARD_DATABASE_URL)" in said(overridden)
    checked = cli("check", "--config", str(config))
    assert checked.exit_code == 0, said(checked)
    assert f"ok (1 agent, 3 accounts, 3 bindings); database {where}" in said(checked)


# --- 7. filters refuse values nothing can have -------------------------------------------


def test_unknown_filter_values_are_refused_with_the_allowed_ones(tmp_path, sqlite_url,
                                                                 fake_slack):
    for args, allowed in ((("turns", "list", "--status", "bogus"),
                           "'pending', 'held', 'delivered', 'failed', 'ignored', 'duplicate'"),
                          (("sessions", "list", "--state", "bogus"),
                           "'live', 'idle', 'paused', 'waiting', 'ended'"),
                          (("turns", "list", "--provider", "pigeon"),
                           "'slack', 'telegram', 'email', 'api'")):
        result = cli(*args, env={"SWITCHBOARD_DATABASE_URL": sqlite_url})
        assert result.exit_code == 2, said(result)
        assert allowed in said(result)

    path = tmp_path / "bindings.yaml"
    path.write_text(slack_config(fake_slack.api_url) + OPERATORS_YAML)
    server = Server(path, sqlite_url).start()
    try:
        turns = server.api("GET", "/api/turns", params={"status": "bogus"})
        assert turns.status_code == 400
        assert turns.json() == {"detail": "status: 'bogus' is not one of pending, held, "
                                          "delivered, failed, ignored, duplicate, cancelled, "
                                          "queued"}
        sessions = server.api("GET", "/api/sessions", params={"state": "gone", "tag": "x"})
        assert sessions.status_code == 400
        assert sessions.json()["detail"] == (
            "state: 'gone' is not one of live, idle, paused, waiting, ended; "
            "tag: 'x' is not one of test, live")
        assert server.api("GET", "/api/turns", params={"status": "failed"}).status_code == 200
    finally:
        server.stop()


# --- 6. check validates as serve does -----------------------------------------------------


def test_check_says_what_serve_will_do_and_fails_on_what_serve_refuses(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    result = cli("check", "--config", str(empty))
    assert result.exit_code == 1
    assert f"{empty}:1: (file): the file is empty" in said(result)

    broken = tmp_path / "broken.yaml"
    broken.write_text("agents:\n  triager: {handler: echo\nbindings: []\n")
    result = cli("check", "--config", str(broken))
    assert result.exit_code == 1
    assert (f"{broken}:3: (yaml): expected ',' or '}}', but got ':' (line 3, column 9), while "
            "parsing a flow mapping that started on line 2") in said(result)

    secret = tmp_path / "secret.yaml"
    secret.write_text("""
agents: {triager: {handler: echo}}
accounts:
  tg: {provider: telegram, token: "1:abc", webhook_secret: "has spaces!"}
bindings: [{agent: triager, account: tg}]
""")
    result = cli("check", "--config", str(secret))
    assert result.exit_code == 1
    assert f"{secret}:4: accounts.tg.webhook_secret: webhook_secret must be 1-256 characters" \
        in said(result)

    unset = tmp_path / "unset.yaml"
    unset.write_text("""
agents: {triager: {handler: echo}}
accounts:
  slack-acme: {provider: slack, bot_token: "${SB_TEST_UNSET_TOKEN}", signing_secret: s}
bindings: [{agent: triager, account: slack-acme}]
""")
    result = cli("check", "--config", str(unset))
    assert result.exit_code == 0, said(result)
    assert ("warning account slack-acme will start disabled: bot_token is not set "
            "(environment variable SB_TEST_UNSET_TOKEN)") in said(result)
    assert "ok (1 agent, 1 account, 1 binding)" in said(result)


# --- 12. the CLI's polish ---------------------------------------------------------------------


def test_cli_version_help_and_tables_that_fit_80_columns(tmp_path, sqlite_url, monkeypatch):
    from switchboard import __version__, cli_common

    assert said(cli("--version")) == f"switchboard {__version__}"
    helped = cli("turns", "list", "-h")
    assert helped.exit_code == 0
    assert "<bool>" not in helped.stdout and "--json" in helped.stdout
    assert "[pending|held|delivered|failed|ignored|duplicate|cancelled|queued]" in said(helped) or \
        "<pending|held|delivered|failed|ignored|duplicate|cancelled|queued>" in said(helped)

    (tmp_path / "bindings.yaml").write_text(EXAMPLE.read_text())
    env = {"SWITCHBOARD_DATABASE_URL": sqlite_url}
    monkeypatch.chdir(tmp_path)
    first = cli("inbox", "provision", "triager", env=env)
    assert (first.exit_code, first.stdout.strip()) == (0, "triager@agents.localhost")
    again = cli("inbox", "provision", "triager", env=env)
    assert said(again) == "triager already has triager@agents.localhost (--new makes another)"
    another = cli("inbox", "provision", "triager", "--new", env=env)
    assert another.stdout.strip() == "triager-2@agents.localhost"

    record_turns(sqlite_url, 3)
    monkeypatch.setattr(cli_common.console, "width", 80)
    listed = cli("turns", "list", env=env)
    assert listed.exit_code == 0, said(listed)
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    ids = [line.split()[0] for line in lines if line.startswith("turn_")]
    assert len(ids) == 3 and all(len(i) == 25 for i in ids)  # whole, pasteable into `show`
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    assert all(re.search(stamp, line) for line in lines if line.startswith("turn_"))
    shown = cli("turns", "show", ids[0], env=env)
    assert re.search(rf"^  {stamp}  received +event_id=Ev\d$", shown.stdout, re.M), shown.stdout
    assert cli("operators", "add", "carol", "--role", "viewer", env=env).exit_code == 0
    operators = cli("operators", "list", env=env).stdout  # the same format, the same rules
    assert re.search(rf"^carol +viewer +every agent +database +{stamp} +- *$", operators, re.M), \
        operators
    assert said(cli("pairing", "list", env=env)) == "no pairing codes or paired senders"


def record_turns(url: str, count: int) -> None:
    import asyncio

    from channels.messages import InboundMessage
    from switchboard.clock import Clock
    from switchboard.store import Store, create_engine

    async def record() -> None:
        engine = create_engine(url)
        store = Store(engine, Clock())
        try:
            for i in range(count):
                await store.turns.record(InboundMessage(
                    provider="slack", account="slack-acme", event_id=f"Ev{i}",
                    conversation="C0SUPPORTCHANNEL", kind="channel", sender="U0ALICEXYZ",
                    text="a message long enough to need some room in the table"), {})
        finally:
            store.close()
            await engine.dispose()

    asyncio.run(record())
