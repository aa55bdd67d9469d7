"""Interactions by email: the prompt in the reply mail with numbered options; the sender
answers by replying with the number or the label at the top (quoted text stripped)."""

from __future__ import annotations

import time
from typing import Any

from fakes.agents import ScriptedAgent
from fakes.mail import compose, provision, running_relay, send


def script(body: dict[str, Any]) -> dict[str, Any]:
    got = body["turn"].get("interaction")
    if got is None:
        return {"reply": "Deploying needs a target.", "interaction": {
            "kind": "choice", "prompt": "Which environment?",
            "options": [{"id": "stg", "label": "Staging"},
                        {"id": "prod", "label": "Production"}]}}
    return {"reply": f"Deploying to {got['option']} (answered {got['by']['id']})"}


def test_a_choice_answered_by_replying_with_its_label(serve):
    with running_relay() as (relay, port), ScriptedAgent(script) as agent:
        server = serve(f"""
agents:
  deployer: {{handler: http, url: "{agent.url}/turn"}}
accounts:
  mail: {{provider: email, domain: agents.test, relay_host: 127.0.0.1, relay_port: {port}}}
bindings:
  - {{name: deploy-mail, agent: deployer, account: mail, session_scope: thread}}
""")
        inbox = provision(server, "deployer", account="mail")
        _, raw = compose("ann@example.com", inbox, "Please deploy the fix.", subject="Deploy")
        send(server, "ann@example.com", inbox, raw)
        prompt = relay.wait(1)[0]
        text = prompt.get_body(("plain",)).get_content()
        assert "Deploying needs a target." in text
        assert "Which environment?" in text and "1. Staging" in text and "2. Production" in text
        # the reply quotes the prompt below its answer: only its new text counts
        quoted = "\n".join("> " + line for line in text.splitlines())
        _, raw = compose("ann@example.com", inbox, f"production\n\nOn Monday you wrote:\n{quoted}",
                         subject="Re: Deploy", headers={"In-Reply-To": prompt["Message-ID"]})
        send(server, "ann@example.com", inbox, raw)
        deadline = time.time() + 8
        while time.time() < deadline and not [r for r in agent.requests
                                              if r["turn"].get("interaction")]:
            time.sleep(0.05)
        seen = [r for r in agent.requests if r["turn"].get("interaction")]
        assert seen, agent.requests
        view = seen[0]["turn"]["interaction"]
        assert view["option"] == "prod" and view["via"] == "email"
        assert view["by"]["provider"] == "email" and view["by"]["id"] == "ann@example.com"
        assert seen[0]["session"]["id"] == agent.requests[0]["session"]["id"]
        follow_up = relay.wait(2)[1]
        assert "Deploying to prod" in follow_up.get_body(("plain",)).get_content()
        item = server.api("GET", "/api/interactions").json()["interactions"][0]
        assert item["state"] == "answered" and item["answer_turn_id"]
