"""What every answer carries (nosniff; no-store on JSON), and who may read /metrics."""

from __future__ import annotations

import pytest

from conftest import ADMIN, VIEWER, slack_config, slack_message

SAFE = {"x-content-type-options": "nosniff", "cache-control": "no-store"}


def headers_of(response) -> dict[str, str]:
    return {name: response.headers.get(name) for name in SAFE}


def test_json_answers_are_nosniff_and_no_store(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    answers = {
        "turns": server.api("GET", "/api/turns", token=VIEWER),
        "accounts": server.api("GET", "/api/accounts", token=VIEWER),
        "unauthorized": server.http.get("/api/turns"),
        "not found": server.api("GET", "/api/turns/turn_nope"),
        "bad request": server.api("GET", "/api/turns", params={"limit": "many"}),
        "health": server.http.get("/healthz"),
        "schema": server.http.get("/openapi.json"),
        "webhook": server.slack_event("slack-acme", slack_message("hi")),
        "refused webhook": server.slack_event("slack-acme", slack_message("hi"), secret="bad"),
        "unknown account": server.http.post("/slack/nobody/events", content=b"{}"),
    }
    for name, response in answers.items():
        assert response.headers["content-type"].startswith("application/json"), name
        assert headers_of(response) == SAFE, name
    assert answers["turns"].status_code == 200 and answers["webhook"].status_code == 200


def test_pages_and_streams_are_nosniff_and_keep_their_caching(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    page = server.http.get("/")
    assert page.status_code == 200 and page.headers["x-content-type-options"] == "nosniff"
    with server.http.stream("GET", "/api/events",
                            headers={"Authorization": f"Bearer {ADMIN}"}) as events:
        assert events.status_code == 200
        assert events.headers["x-content-type-options"] == "nosniff"
        assert events.headers["cache-control"] == "no-cache"


def test_metrics_are_open_without_a_token_configured(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    assert server.http.get("/metrics").status_code == 200


@pytest.fixture
def metrics_token(monkeypatch) -> str:
    token = "scrape-8d1f0c2b7a"
    monkeypatch.setenv("METRICS_TOKEN", token)
    return token


def test_metrics_token_is_required_when_configured(serve, fake_slack, metrics_token):
    server = serve(slack_config(fake_slack.api_url) + "metrics_token: ${METRICS_TOKEN}\n")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": metrics_token},
                    {"Authorization": f"Bearer {ADMIN}"}):
        refused = server.http.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "switchboard_" not in refused.text
    allowed = server.http.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert allowed.status_code == 200 and "switchboard_turns_total" in allowed.text


def test_metrics_operators_admits_any_operator_and_the_metrics_token(serve, fake_slack,
                                                                    metrics_token):
    server = serve(slack_config(fake_slack.api_url)
                   + "metrics_token: ${METRICS_TOKEN}\nmetrics_operators: true\n")
    assert server.http.get("/metrics").status_code == 401
    assert server.http.get("/metrics", headers={"Authorization": "Bearer no"}).status_code == 401
    for token in (VIEWER, ADMIN, metrics_token):
        response = server.http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, token
