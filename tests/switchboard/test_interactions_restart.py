"""Restart safety: a pending interaction survives a SIGKILL, and an answer given while
`serve` is down (from the CLI) reaches the agent once it is back."""

from __future__ import annotations

import time

from conftest import OPERATORS_YAML, ServeProcess, run_cli
from fakes.agents import ScriptedAgent, asks_approval


def test_an_answer_given_while_serve_is_down_is_handled_after_restart(tmp_path,
                                                                      database_url):
    with ScriptedAgent(asks_approval()) as agent:
        path = tmp_path / "bindings.yaml"
        path.write_text(f"""
agents:
  helpdesk: {{handler: http, url: "{agent.url}/turn"}}
{OPERATORS_YAML}""")
        serve = ServeProcess(path, database_url, tmp_path)
        try:
            session = serve.api("POST", "/api/agents/helpdesk/sessions", json={}).json()
            serve.api("POST", f"/api/sessions/{session['id']}/messages",
                      json={"text": "refund please"})
            pending = serve.api("GET", "/api/interactions").json()["interactions"]
        finally:
            serve.kill()  # SIGKILL: nothing is flushed on the way out
        assert [i["kind"] for i in pending] == ["approval"]
        answered = run_cli(database_url, tmp_path, "interactions", "answer", pending[0]["id"],
                           "Approve")
        assert answered.returncode == 0, answered.stderr
        assert "answered: approve" in answered.stdout
        assert not [r for r in agent.requests if r["turn"].get("interaction")]

        serve = ServeProcess(path, database_url, tmp_path)
        try:
            deadline = time.time() + 15
            while time.time() < deadline and not [
                    r for r in agent.requests if r["turn"].get("interaction")]:
                time.sleep(0.1)
            seen = [r for r in agent.requests if r["turn"].get("interaction")]
            assert seen, serve.logs()
            assert seen[0]["turn"]["interaction"]["option"] == "approve"
            assert seen[0]["turn"]["interaction"]["by"] == {"operator": "cli"}
            assert seen[0]["session"]["id"] == session["id"]
            deadline = time.time() + 10
            while time.time() < deadline:
                transcript = serve.api("GET", f"/api/sessions/{session['id']}").json()
                if any(m["text"] == "Decision: approve" for m in transcript["transcript"]):
                    break
                time.sleep(0.1)
            assert transcript["state"] == "live"
            assert any(m["text"] == "Decision: approve" for m in transcript["transcript"])
        finally:
            serve.stop()
