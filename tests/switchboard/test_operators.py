"""Operator accounts through the API and the CLI against a running server: operators kept in
the database, limited to agents, rotated and revoked while `serve` runs, and the local
recovery of a lost admin token."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from conftest import (
    ADMIN,
    OPERATOR,
    SIGNING_SECRET,
    VIEWER,
    ServeProcess,
    Server,
    read_sse,
    run_cli,
    slack_message,
)

CONFIG = f"""
agents:
  triager: {{handler: echo}}
  helper: {{handler: echo}}
accounts:
  slack-acme:
    provider: slack
    bot_token: xoxb-test
    signing_secret: {SIGNING_SECRET}
    api_url: API_URL
  mail:
    provider: email
    domain: agents.example.com
bindings:
  - {{name: triage-dm, agent: triager, account: slack-acme, dm: true, mentions: false}}
  - {{name: help-channel, agent: helper, account: slack-acme, dm: false, channels: [C0HELP]}}
"""


def start(serve, fake_slack) -> Server:
    return serve(CONFIG.replace("API_URL", fake_slack.api_url))


def send(server: Server, text: str, channel: str, kind: str) -> dict[str, Any]:
    event = slack_message(text, channel=channel, channel_type=kind)
    return server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])


def add(server: Server, name: str, role: str, agents: list[str] | None = None) -> str:
    body: dict[str, Any] = {"name": name, "role": role}
    if agents is not None:
        body["agents"] = agents
    answer = server.api("POST", "/api/operators", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def wait_status(server: Server | ServeProcess, token: str, status: int,
                timeout: float = 5.0) -> float:
    """Seconds until `GET /api/me` with `token` answers `status` (fails after `timeout`)."""
    began = time.monotonic()
    while (code := server.api("GET", "/api/me", token=token).status_code) != status:
        assert time.monotonic() - began < timeout, f"still {code}, wanted {status}"
        time.sleep(0.05)
    return time.monotonic() - began


def test_an_operator_limited_to_an_agent_sees_and_does_only_what_it_owns(serve, fake_slack):
    server = start(serve, fake_slack)
    token = add(server, "tri-owner", "operator", ["triager"])
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    threading.Thread(target=read_sse, args=(f"{server.url}/api/events", token, seen, stop),
                     daemon=True).start()
    time.sleep(0.3)
    helper_turn = send(server, "for the helper", "C0HELP", "channel")
    mine = send(server, "for the triager", "D0ALICE", "im")
    assert (mine["agent"], helper_turn["agent"]) == ("triager", "helper")
    theirs, ours = helper_turn["session_id"], mine["session_id"]
    for address in ("tri@agents.example.com", "help@agents.example.com"):
        agent = "triager" if address.startswith("tri") else "helper"
        assert server.api("POST", f"/api/agents/{agent}/inbox",
                          json={"local_part": address.split("@")[0]}).status_code == 201

    def api(method: str, path: str, **kw: Any) -> Any:
        return server.api(method, path, token=token, **kw)

    assert [t["id"] for t in api("GET", "/api/turns").json()["turns"]] == [mine["id"]]
    assert [s["id"] for s in api("GET", "/api/sessions").json()["sessions"]] == [ours]
    assert [i["email_address"] for i in api("GET", "/api/inboxes").json()["inboxes"]] == [
        "tri@agents.example.com"]
    assert api("GET", f"/api/turns/{mine['id']}").status_code == 200
    assert api("GET", f"/api/sessions/{ours}").status_code == 200
    refused = api("GET", f"/api/turns/{helper_turn['id']}")
    assert refused.status_code == 403
    assert "limited to the agents triager" in refused.json()["detail"]
    for method, path, body in (
            ("GET", "/api/turns?agent=helper", None), ("GET", "/api/sessions?agent=helper", None),
            ("GET", f"/api/sessions/{theirs}", None),
            ("GET", f"/api/sessions/{theirs}/events", None),
            ("POST", f"/api/sessions/{theirs}/pause", None),
            ("POST", f"/api/sessions/{theirs}/end", None),
            ("POST", f"/api/sessions/{ours}/transfer", {"agent": "helper"}),
            ("POST", f"/api/sessions/{theirs}/messages", {"text": "hi", "wait": 0}),
            ("POST", "/api/agents/helper/sessions", {}), ("POST", "/api/agents/helper/inbox", {}),
            ("DELETE", "/api/inboxes/help@agents.example.com", None),
            ("GET", "/api/operators", None), ("GET", "/api/audit", None)):
        answer = api(method, path, json=body) if body is not None else api(method, path)
        assert answer.status_code == 403, (method, path, answer.text)
    assert server.api("GET", f"/api/sessions/{theirs}").json()["state"] == "live"
    assert api("POST", f"/api/sessions/{ours}/pause").status_code == 200
    assert api("POST", f"/api/sessions/{ours}/resume").status_code == 200
    assert api("DELETE", "/api/inboxes/tri@agents.example.com").status_code == 200
    stop.set()
    shown = {e["data"].get("turn_id") for e in seen} | {e["data"].get("session_id")
                                                        for e in seen}
    assert mine["id"] in shown and ours in shown
    assert helper_turn["id"] not in shown and theirs not in shown
    audit = server.api("GET", "/api/audit").json()["entries"]
    done = [(e["actor"], e["action"], e["target"]) for e in audit]
    assert ("tri-owner", "pause", ours) in done and ("tri-owner", "resume", ours) in done
    assert ("tri-owner", "revoke_inbox", "tri@agents.example.com") in done
    assert ("root", "add_operator", "tri-owner") in done
    assert not any(e["actor"] == "tri-owner" and e["target"] == theirs for e in audit)


def test_operators_are_listed_without_tokens_and_bad_requests_are_refused(serve, fake_slack):
    server = start(serve, fake_slack)
    token = add(server, "night-shift", "viewer", ["helper", "triager"])
    listed = server.api("GET", "/api/operators")
    assert listed.status_code == 200 and token not in listed.text
    rows = {r["name"]: r for r in listed.json()["operators"]}
    assert set(rows) == {"root", "ops", "watcher", "night-shift"}
    assert rows["night-shift"]["agents"] == ["helper", "triager"]
    assert (rows["night-shift"]["source"], rows["root"]["source"]) == ("database", "config")
    assert not any("token" in key for row in rows.values() for key in row)
    for body, status, words in (
            ({"name": "x", "role": "king"}, 400, "unknown role 'king'"),
            ({"name": "x", "role": "admin", "agents": ["triager"]}, 400, "an admin sees every"),
            ({"name": "x", "role": "viewer", "agents": ["ghost"]}, 400, "unknown agent 'ghost'"),
            ({"name": "no spaces", "role": "viewer"}, 400, "not a usable operator name"),
            ({"name": "night-shift", "role": "viewer"}, 409, "exists already"),
            ({"name": "ops", "role": "viewer"}, 400, "defined in the config")):
        answer = server.api("POST", "/api/operators", json=body)
        assert answer.status_code == status and words in answer.json()["detail"], answer.text
    assert server.api("POST", "/api/operators/ghost/rotate").status_code == 404
    assert server.api("DELETE", "/api/operators/ops").status_code == 400
    for who in (OPERATOR, VIEWER):
        assert server.api("GET", "/api/operators", token=who).status_code == 403
        assert server.api("POST", "/api/operators", token=who,
                          json={"name": "me", "role": "admin"}).status_code == 403


def test_tokens_added_rotated_and_revoked_take_effect_on_a_running_server(
        serve, fake_slack, database_url: str, tmp_path: Path):
    from switchboard.cli import app

    server = start(serve, fake_slack)
    cli = CliRunner()
    env = {"SWITCHBOARD_DATABASE_URL": database_url, "NO_COLOR": "1", "COLUMNS": "200"}
    config = str(tmp_path / "bindings-0.yaml")

    def switchboard(*args: str) -> str:
        result = cli.invoke(app, [*args, "--config", config], env=env)
        assert result.exit_code == 0, result.output
        return result.output

    added = json.loads(switchboard("operators", "add", "carol", "--role", "operator",
                                   "--agents", "triager", "--json"))
    assert added["agents"] == ["triager"]
    picked_up = wait_status(server, added["token"], 200)
    assert picked_up < 3  # read again every second
    assert server.api("GET", "/api/me", token=added["token"]).json()["name"] == "carol"
    listing = switchboard("operators", "list")
    assert "carol" in listing and "triager" in listing and added["token"] not in listing
    rotated = json.loads(switchboard("operators", "rotate", "carol", "--json"))["token"]
    wait_status(server, added["token"], 401)
    assert server.api("GET", "/api/me", token=rotated).status_code == 200
    # over the API the change counts at once on this server
    again = server.api("POST", "/api/operators/carol/rotate").json()["token"]
    assert server.api("GET", "/api/me", token=rotated).status_code == 401
    assert server.api("GET", "/api/me", token=again).status_code == 200
    assert server.api("DELETE", "/api/operators/carol").status_code == 200
    assert server.api("GET", "/api/me", token=again).status_code == 401
    dave = add(server, "dave", "viewer")
    assert "dave is revoked" in switchboard("operators", "revoke", "dave")
    wait_status(server, dave, 401)
    refused = cli.invoke(app, ["operators", "rotate", "ops", "--config", config], env=env)
    assert refused.exit_code == 1 and "defined in" in refused.output
    session_id = send(server, "hello", "D0ALICE", "im")["session_id"]
    paused = cli.invoke(app, ["sessions", "pause", session_id], env=env)
    assert paused.exit_code == 0, paused.output
    actions = [(e["actor"], e["action"], e["target"])
               for e in server.api("GET", "/api/audit").json()["entries"]]
    assert ("cli", "add_operator", "carol") in actions
    assert ("cli", "rotate_operator", "carol") in actions
    assert ("root", "revoke_operator", "carol") in actions
    assert ("cli", "revoke_operator", "dave") in actions
    assert ("cli", "pause", session_id) in actions
    assert server.api("GET", "/api/me", token=ADMIN).status_code == 200


def test_a_lost_admin_token_is_recovered_on_the_machine_with_the_database(
        sqlite_url: str, tmp_path: Path, fake_slack, capsys):
    path = tmp_path / "bindings.yaml"
    path.write_text(CONFIG.replace("API_URL", fake_slack.api_url))  # no operators at all
    server = ServeProcess(path, sqlite_url, tmp_path)  # the token is printed once serving
    try:
        deadline = time.monotonic() + 10
        while "sb_" not in (printed := server.logs()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "an admin token was created" in printed  # ... and then lost
        rescue = run_cli(sqlite_url, tmp_path, "operators", "add", "rescue", "--role", "admin",
                         "--config", str(path))
        assert rescue.returncode == 0, rescue.stderr
        assert "shown only this once" in rescue.stdout
        token = rescue.stdout.split("kept):")[1].split()[0]
        wait_status(server, token, 200)
        names = [r["name"] for r in server.api("GET", "/api/operators",
                                               token=token).json()["operators"]]
        assert names == ["admin", "rescue"]
        new_admin = server.api("POST", "/api/operators/admin/rotate", token=token)
        me = server.api("GET", "/api/me", token=new_admin.json()["token"]).json()
        assert (me["name"], me["role"]) == ("admin", "admin")
    finally:
        server.stop()


def test_the_config_check_names_unknown_agents_of_operators_and_transfers(tmp_path: Path):
    import pytest

    from switchboard.config import load_config
    from switchboard.errors import ConfigError

    path = tmp_path / "bindings.yaml"
    path.write_text("""\
agents:
  triager: {handler: echo}
  helper: {handler: echo}
accounts:
  mail: {provider: email, domain: agents.example.com}
bindings:
  - agent: triager
    account: mail
    transfer_to: [helper, nobody]
operators:
  - {name: carol, role: operator, token: t1, agents: [triager, ghost]}
  - {name: boss, role: admin, token: t2, agents: [helper]}
  - {name: dana, role: viewer, token: t3, agents: [helper]}
""")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [(p.line, p.key, p.message) for p in caught.value.problems] == [
        (9, "bindings[0].transfer_to[1]", "unknown agent 'nobody'; agents are: triager, helper"),
        (11, "operators[0].agents[1]", "unknown agent 'ghost'; agents are: triager, helper"),
        (12, "operators[1].agents", "an admin sees every agent; limit an operator or a viewer "
         "to agents instead")]
    path.write_text(path.read_text().replace(", nobody", "").replace(", ghost", "")
                    .replace("role: admin, token: t2, agents: [helper]", "role: admin, token: t2"))
    config = load_config(path)
    assert config.bindings[0].transfer_to == ("helper",)
    assert [op.agents for op in config.operators] == [["triager"], None, ["helper"]]
