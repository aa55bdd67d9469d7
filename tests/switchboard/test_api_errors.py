"""The operator API answers each kind of refusal with one status and the error's own words,
wherever the route that raised it (the table is `switchboard/http_errors.py`)."""

from __future__ import annotations

import pytest

from conftest import OPERATOR, slack_config


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_refusals_are_answered_with_their_status_and_words(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    cases = [
        ("GET", "/api/turns/turn_nope", None, 404, "no turn turn_nope"),
        ("GET", "/api/sessions/ses_nope", None, 404, "no session ses_nope"),
        ("POST", "/api/sessions/ses_nope/pause", None, 404, "no session ses_nope"),
        ("POST", "/api/agents/ghost/sessions", {}, 404, "no agent named 'ghost'"),
        ("GET", "/api/turns?cursor=garbage", None, 400, "cursor is not one this API gave out"),
        ("GET", "/api/sessions?cursor=bm9wZQ", None, 400,
         "cursor is not one this API gave out"),
        ("GET", "/api/sessions?started_after=yesterday", None, 400,
         "started_after: 'yesterday' is not an ISO date or time"),
        ("POST", "/api/agents/triager/inbox", {}, 400,
         "no email account is configured; add one with provider: email"),
        ("DELETE", "/api/inboxes/nobody@example.com", None, 404, "no inbox nobody@example.com"),
    ]
    for method, path, body, status, words in cases:
        answer = server.api(method, path, token=OPERATOR, json=body)
        assert answer.status_code == status, (path, answer.text)
        assert answer.json() == {"detail": words}, path
    session = server.api("POST", "/api/agents/triager/sessions", token=OPERATOR, json={}).json()
    sid = session["id"]
    assert server.api("POST", f"/api/sessions/{sid}/end", token=OPERATOR).status_code == 200
    refused = server.api("POST", f"/api/sessions/{sid}/pause", token=OPERATOR)
    assert refused.status_code == 409 and "cannot become paused" in refused.json()["detail"]
    live = server.api("POST", "/api/agents/triager/sessions", token=OPERATOR, json={}).json()
    kept = server.api("DELETE", f"/api/sessions/{live['id']}")
    assert kept.status_code == 409 and "only ended sessions" in kept.json()["detail"]
