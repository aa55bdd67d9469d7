"""`/metrics` in Prometheus text format, as a scraper sees it."""

from __future__ import annotations

from conftest import slack_config, slack_message


def test_metrics_count_turns_latency_retries_and_rejections(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    fake_slack.rate_limit_next(retry_after=0)
    event = slack_message("<@UBOT> count me", etype="app_mention")
    server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    quiet = server.slack_event("slack-acme", slack_message("quiet")).json()["turn_id"]
    assert server.slack_event("slack-acme", event, secret="bad").status_code == 401
    assert server.wait_turn(quiet)["status"] == "ignored"
    response = server.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'switchboard_turns_total{provider="slack",status="delivered"} 1.0' in text
    assert 'switchboard_turns_total{provider="slack",status="ignored"} 1.0' in text
    assert 'switchboard_delivery_retries_total{provider="slack"} 1.0' in text
    assert ('switchboard_rejected_requests_total{account="slack-acme",reason="bad_signature"} '
            '1.0') in text
    assert 'switchboard_ack_seconds_count{provider="slack"} 3.0' in text
    assert 'switchboard_delivery_seconds_count{provider="slack"} 1.0' in text
    assert "switchboard_outbox_depth 0.0" in text
