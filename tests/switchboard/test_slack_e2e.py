"""A Slack conversation end to end: signed events in over HTTP, replies out to the fake Web API,
and the whole story readable through the operator API."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from conftest import SIGNING_SECRET, VIEWER, slack_config, slack_message, wait_until


def test_mention_gets_threaded_reply_and_turn_tells_the_story(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    event = slack_message("<@UBOT> hello there", etype="app_mention", ts="1700000000.000100")
    response = server.slack_event("slack-acme", event)
    assert response.status_code == 200
    turn = server.wait_turn(response.json()["turn_id"])

    assert turn["status"] == "delivered"
    [post] = fake_slack.posts_to("C0SUPPORT")
    assert post["thread_ts"] == "1700000000.000100"
    assert "hello there" in post["text"]
    assert turn["provider_message_id"] == post["ts"]
    assert turn["binding"] == "triager-slack-acme"
    assert turn["agent"] == "triager"
    assert "mentions the bot" in turn["route_reason"]
    assert turn["session_id"].startswith("ses_")
    assert turn["reply_text"] == post["text"]
    assert turn["delivery_status"] == "delivered" and turn["delivery_attempts"] == 1
    names = [e["name"] for e in turn["events"]]
    assert names == ["received", "routed", "session_created", "agent_replied", "delivered"]
    assert all(e["at"] for e in turn["events"])
    assert "token" not in turn["payload"]

    session = server.api("GET", f"/api/sessions/{turn['session_id']}").json()
    roles = [m["role"] for m in session["transcript"]]
    assert roles[-2:] == ["user", "agent"]


def test_direct_message_gets_reply(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    event = slack_message("hi in private", channel="D0ALICE", channel_type="im")
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    assert turn["status"] == "delivered"
    [post] = fake_slack.posts_to("D0ALICE")
    assert "hi in private" in post["text"]
    assert "direct message" in turn["route_reason"]


def test_channel_message_without_mention_is_ignored_with_reason(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, name="triage-slack"))
    turn_id = server.slack_event("slack-acme", slack_message("just chatting")).json()["turn_id"]
    turn = server.wait_turn(turn_id)
    assert turn["status"] == "ignored"
    assert turn["route_reason"] == ("a channel message that does not mention the bot; "
                                    "binding triage-slack answers mentions and DMs only")
    time.sleep(0.2)
    assert fake_slack.posts == []


def test_sender_outside_allowlist_is_ignored_with_reason(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, name="triage-slack",
                                allow_senders=["U0ALICE"]))
    event = slack_message("<@UBOT> let me in", etype="app_mention", user="U123")
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    assert turn["status"] == "ignored"
    assert turn["route_reason"] == "sender U123 is not in allow_senders of binding triage-slack"
    assert fake_slack.posts == []


def test_bad_signature_stale_and_malformed_are_rejected_and_counted(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    bad = server.slack_event("slack-acme", slack_message("<@UBOT> x", etype="app_mention"),
                             secret="not-the-secret")
    assert bad.status_code == 401
    stale = server.slack_event("slack-acme", slack_message("<@UBOT> x", etype="app_mention"),
                               timestamp=int(time.time()) - 600)
    assert stale.status_code == 401
    assert "5 minutes" in stale.json()["error"]
    malformed = server.slack_post("slack-acme", b"{not json")
    assert malformed.status_code == 400
    unsigned = server.http.post("/slack/slack-acme/events", content=b"{}")
    assert unsigned.status_code == 401
    oversized = server.slack_post("slack-acme", b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert oversized.status_code == 413
    assert "larger than" in oversized.json()["error"]

    assert server.turns() == []
    [account] = server.api("GET", "/api/accounts").json()["accounts"]
    assert account["rejected"] == {"bad_signature": 2, "stale": 1, "malformed": 1,
                                   "oversized": 1}
    assert account["enabled"] is True
    # the process keeps serving
    ok = server.slack_event("slack-acme", slack_message("<@UBOT> fine", etype="app_mention"))
    assert server.wait_turn(ok.json()["turn_id"])["status"] == "delivered"


def test_url_verification_challenge(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    body = b'{"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}'  # noqa: E501
    response = server.slack_post("slack-acme", body)
    assert response.status_code == 200
    assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_retried_event_is_one_turn_and_one_reply(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    event = slack_message("<@UBOT> once", etype="app_mention")
    first = server.slack_event("slack-acme", event, event_id="Ev0RETRY")
    turn = server.wait_turn(first.json()["turn_id"])
    retry = server.slack_event("slack-acme", event, event_id="Ev0RETRY",
                               headers={"X-Slack-Retry-Num": "1",
                                        "X-Slack-Retry-Reason": "http_timeout"})
    assert retry.status_code == 200
    assert retry.json()["duplicate_of"] == turn["id"]
    time.sleep(0.3)
    assert len(fake_slack.posts) == 1
    assert [t["id"] for t in server.turns()] == [turn["id"]]
    [duplicate] = server.turns(status="duplicate")
    assert duplicate["duplicate_of"] == turn["id"]
    original = server.turn(turn["id"])
    assert "duplicate_received" in [e["name"] for e in original["events"]]


def test_one_event_sent_eight_times_at_once_is_one_turn_among_new_ones(serve, fake_slack):
    """Slack's retries can arrive together, beside other events, and be recorded in one
    commit: the first copy is the turn, the others are its duplicates, and the new events
    recorded with them are turns of their own."""
    server = serve(slack_config(fake_slack.api_url))
    same = slack_message("<@UBOT> only once", etype="app_mention")

    def post(n: int) -> dict:
        if n % 2:
            return server.slack_event("slack-acme", same, event_id="Ev0TOGETHER").json()
        other = slack_message(f"<@UBOT> other {n}", etype="app_mention")
        return server.slack_event("slack-acme", other).json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(16)))
    originals = [a for a in answers[1::2] if "duplicate_of" not in a]
    assert len(originals) == 1
    assert {a["duplicate_of"] for a in answers[1::2] if "duplicate_of" in a} == {
        originals[0]["turn_id"]}
    assert all("duplicate_of" not in a for a in answers[0::2])
    for answer in [*answers[0::2], *originals]:
        assert server.wait_turn(answer["turn_id"])["status"] == "delivered"
    assert wait_until(lambda: len(fake_slack.posts) == 9)
    assert sorted(p["text"] for p in fake_slack.posts) == sorted(
        ["echo: only once"] + [f"echo: other {n}" for n in range(0, 16, 2)])
    assert len(server.turns(status="duplicate")) == 7


def test_mention_delivered_as_two_events_gets_one_reply(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    ts = "1700000001.000200"
    mention = slack_message("<@UBOT> twice?", etype="app_mention", ts=ts)
    message = slack_message("<@UBOT> twice?", ts=ts)
    first = server.slack_event("slack-acme", mention).json()
    second = server.slack_event("slack-acme", message).json()
    assert second["duplicate_of"] == first["turn_id"]
    server.wait_turn(first["turn_id"])
    time.sleep(0.3)
    assert len(fake_slack.posts) == 1


def test_bot_own_message_gets_no_reply(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, channels=["C0SUPPORT"]))
    own = {"type": "message", "channel": "C0SUPPORT", "channel_type": "channel",
           "user": "UBOT", "bot_id": "BBOT", "text": "echo: something", "ts": f"{time.time():.6f}"}
    turn = server.wait_turn(server.slack_event("slack-acme", own).json()["turn_id"])
    assert turn["status"] == "ignored"
    assert "own message" in turn["route_reason"]
    edit = {"type": "message", "subtype": "message_changed", "channel": "C0SUPPORT",
            "channel_type": "channel", "ts": f"{time.time():.6f}",
            "message": {"user": "U0ALICE", "text": "edited"}}
    turn = server.wait_turn(server.slack_event("slack-acme", edit).json()["turn_id"])
    assert turn["status"] == "ignored"
    assert "message_changed" in turn["route_reason"]
    time.sleep(0.2)
    assert fake_slack.posts == []


def test_channel_not_found_fails_the_turn_with_slacks_words(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    fake_slack.fail_next("channel_not_found")
    event = slack_message("<@UBOT> where am I", etype="app_mention")
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    assert turn["status"] == "failed"
    assert turn["delivery_status"] == "failed"
    assert turn["error"] == "channel_not_found"
    assert turn["delivery_attempts"] == 1
    [account] = server.api("GET", "/api/accounts").json()["accounts"]
    assert account["last_error"] == "channel_not_found"
    assert account["last_error_at"] is not None and account["last_outbound_at"] is None
    # the next reply goes out: the account shows it, and still shows the last error
    event = slack_message("<@UBOT> and now?", etype="app_mention")
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    assert turn["status"] == "delivered"
    [account] = server.api("GET", "/api/accounts").json()["accounts"]
    assert account["last_outbound_at"] is not None
    assert account["last_error"] == "channel_not_found"


def test_rate_limit_is_retried_after_retry_after(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    fake_slack.rate_limit_next(retry_after=1)
    event = slack_message("<@UBOT> slowly", etype="app_mention")
    started = time.time()
    turn = server.wait_turn(server.slack_event("slack-acme", event).json()["turn_id"])
    assert turn["status"] == "delivered"
    assert time.time() - started >= 1.0
    assert turn["delivery_attempts"] == 2
    retry = [e for e in turn["events"] if e["name"] == "delivery_retry"]
    assert retry and retry[0]["detail"]["error"] == "ratelimited"


def test_two_accounts_bound_to_different_agents_stay_apart(serve, fake_slack):
    from fakes.slack_api import FakeSlackAPI

    with FakeSlackAPI(bot_user_id="UOTHER", bot_id="BOTHER") as other:
        config = f"""
agents:
  triager: {{handler: echo, model: small}}
  helper: {{handler: echo, model: large}}
accounts:
  slack-acme: {{provider: slack, bot_token: xoxb-a, signing_secret: {SIGNING_SECRET},
               api_url: "{fake_slack.api_url}"}}
  slack-beta: {{provider: slack, bot_token: xoxb-b, signing_secret: other-secret,
               api_url: "{other.api_url}"}}
bindings:
  - {{agent: triager, account: slack-acme}}
  - {{agent: helper, account: slack-beta}}
"""
        server = serve(config)
        a = server.slack_event("slack-acme", slack_message("<@UBOT> a", etype="app_mention"))
        b = server.slack_event("slack-beta", slack_message("<@UOTHER> b", etype="app_mention"),
                               secret="other-secret")
        wrong = server.slack_event("slack-beta", slack_message("<@UOTHER> c",
                                                               etype="app_mention"))
        assert wrong.status_code == 401
        ta = server.wait_turn(a.json()["turn_id"])
        tb = server.wait_turn(b.json()["turn_id"])
        assert (ta["agent"], tb["agent"]) == ("triager", "helper")
        assert ta["session_id"] != tb["session_id"]
        assert len(fake_slack.posts) == 1 and len(other.posts) == 1
        assert fake_slack.posts[0]["auth"] == "Bearer xoxb-a"
        assert other.posts[0]["auth"] == "Bearer xoxb-b"
        assert [t["id"] for t in server.turns(account="slack-beta")] == [tb["id"]]


def test_follow_threads_answers_thread_replies_without_mention(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url, follow_threads=True,
                                session_scope="thread"))
    root = "1700000002.000100"
    first = server.slack_event("slack-acme", slack_message("<@UBOT> start", etype="app_mention",
                                                          ts=root))
    t1 = server.wait_turn(first.json()["turn_id"])
    follow = server.slack_event("slack-acme", slack_message("and more", thread_ts=root))
    t2 = server.wait_turn(follow.json()["turn_id"])
    assert t2["status"] == "delivered"
    assert t2["session_id"] == t1["session_id"]
    assert "thread" in t2["route_reason"]
    elsewhere = server.slack_event("slack-acme", slack_message("other", thread_ts="1.2"))
    assert server.wait_turn(elsewhere.json()["turn_id"])["status"] == "ignored"


def test_operator_api_needs_a_token_and_the_right_role(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    assert server.http.get("/api/turns").status_code == 401
    assert server.api("GET", "/api/turns", token="wrong").status_code == 401
    assert server.api("GET", "/api/turns", token=VIEWER).status_code == 200
    assert server.http.get("/healthz").json()["status"] == "ok"
    assert "/api/turns/{turn_id}" in server.http.get("/openapi.json").json()["paths"]


def test_turns_list_filters_and_cursor(serve, fake_slack):
    server = serve(slack_config(fake_slack.api_url))
    ids = []
    for i in range(5):
        r = server.slack_event("slack-acme", slack_message(f"<@UBOT> n{i}", etype="app_mention"))
        ids.append(r.json()["turn_id"])
    ignored = server.slack_event("slack-acme", slack_message("quiet")).json()["turn_id"]
    for turn_id in [*ids, ignored]:
        server.wait_turn(turn_id)
    page = server.api("GET", "/api/turns", params={"limit": 2, "status": "delivered"}).json()
    seen = [t["id"] for t in page["turns"]]
    while page["next_cursor"]:
        page = server.api("GET", "/api/turns", params={"limit": 2, "status": "delivered",
                                                       "cursor": page["next_cursor"]}).json()
        seen += [t["id"] for t in page["turns"]]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert [t["id"] for t in server.turns(status="ignored")] == [ignored]
    assert server.api("GET", "/api/turns", params={"cursor": "garbage"}).status_code == 400
    assert server.turns(agent="nobody") == []
