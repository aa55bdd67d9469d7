"""`q=`: a turn found by words of its message text, by its id, its session id or its provider
event id, newest first with a cursor; the CLI says when no turn matches."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from conftest import VIEWER, mail_config, run_cli, slack_config, slack_message


# Messages as Slack sends them in `app_mention` events: a user mention, then the text.
def indexed(server: Any, q: str, count: int) -> list[str]:
    """The ids `q=` finds once `count` turns are found: on SQLite the words of new turns are
    indexed a batch at a time, about every half second (store/text_index.py)."""
    deadline = time.monotonic() + 10
    while True:
        response = server.api("GET", "/api/turns", token=VIEWER, params={"q": q})
        assert response.status_code == 200, response.text
        ids = [t["id"] for t in response.json()["turns"]]
        if len(ids) >= count or time.monotonic() > deadline:
            return ids
        time.sleep(0.1)


TEXTS = ["<@U0BOT> My invoice for November shows a double charge, can you check?",
         "<@U0BOT> The invoice PDF link in the e-mail gives a 404",
         "<@U0BOT> Café opening hours on Sunday?"]


def test_q_finds_turns_by_words_and_ids_newest_first(serve: Any, fake_slack: Any,
                                                      database_url: str, tmp_path: Path) -> None:
    server = serve(slack_config(fake_slack.api_url))
    ids, events = [], []
    for n, text in enumerate(TEXTS):
        event_id = f"Ev0SEARCH{n:04d}"
        response = server.slack_event("slack-acme", slack_message(
            text, etype="app_mention", channel=f"C0SEARCH{n}", ts=f"1700000{n}00.000100"),
            event_id=event_id)
        assert response.status_code == 200, response.text
        ids.append(response.json()["turn_id"])
        events.append(event_id)
    turns = [server.wait_turn(turn_id) for turn_id in ids]

    def found(token: str = VIEWER, **params: Any) -> dict[str, Any]:
        response = server.api("GET", "/api/turns", token=token, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    # Words of the text, any case, all of them; newest first, a page at a time.
    assert indexed(server, "café", 1) == [ids[2]]
    first = found(q="INVOICE", limit=1)
    assert [t["id"] for t in first["turns"]] == [ids[1]] and first["next_cursor"]
    second = found(q="invoice", limit=1, cursor=first["next_cursor"])
    assert [t["id"] for t in second["turns"]] == [ids[0]] and second["next_cursor"] is None
    assert [t["id"] for t in found(q="double invoice")["turns"]] == [ids[0]]
    assert [t["id"] for t in found(q="café")["turns"]] == [ids[2]]
    assert "payload" not in found(q="404")["turns"][0]
    # Exact ids: the turn, its provider event, its session (with the other filters).
    assert [t["id"] for t in found(q=ids[2])["turns"]] == [ids[2]]
    assert [t["id"] for t in found(q=events[0])["turns"]] == [ids[0]]
    assert [t["id"] for t in found(q=turns[1]["session_id"])["turns"]] == [ids[1]]
    assert found(q=ids[2], status="failed")["turns"] == []
    # Nothing matches: an empty page, no error, whatever the punctuation.
    for absent in ("refund", '"unbalanced AND (', "***"):
        assert found(q=absent) == {"turns": [], "next_cursor": None}

    cli = run_cli(database_url, tmp_path, "turns", "list", "--search", "refund")
    assert cli.returncode == 0, cli.stderr
    assert "no turns match q=refund" in cli.stdout
    cli = run_cli(database_url, tmp_path, "turns", "list", "-q", "invoice", "--json")
    assert [t["id"] for t in json.loads(cli.stdout)["turns"]] == [ids[1], ids[0]]


def test_a_mail_with_a_megabyte_of_words_is_recorded_and_found(serve: Any,
                                                                mail_relay: Any) -> None:
    """PostgreSQL's tsvector holds at most 1 MB: the text index reads the first 100,000
    characters, so a long mail (a log pasted in) is recorded, and found by its first words."""
    from fakes.mail import compose, provision, send, turn_of

    _relay, port = mail_relay
    server = serve(mail_config(port, name="triage-mail"))
    inbox = provision(server, account="mail")
    # 60,000 distinct words, as a dump of ids would be: over 1 MB of them as a tsvector
    dump = " ".join(f"req{n:06d}x{n * 7919 % 1000003:07d}" for n in range(60_000))
    message_id, raw = compose("ann@example.com", inbox, "Overnight failures:\n" + dump,
                              subject="Job log")
    send(server, "ann@example.com", inbox, raw)
    turn = turn_of(server, inbox, message_id)
    assert turn["status"] != "failed", turn
    assert indexed(server, "overnight failures", 1) == [turn["id"]]


def test_filters_page_through_every_account_and_conversation(serve: Any,
                                                             fake_slack: Any) -> None:
    """provider= and conversation= are asked per account and merged: newest first, a page
    at a time, as one listing would be."""
    server = serve(slack_config(fake_slack.api_url))
    ids = []
    for n in range(5):
        message = slack_message(f"<@U0BOT> question {n}", etype="app_mention",
                                channel="C0PAGED" if n % 2 else "C0OTHER",
                                ts=f"1700001{n}00.000100")
        response = server.slack_event("slack-acme", message, event_id=f"Ev0PAGED{n:04d}")
        assert response.status_code == 200, response.text
        ids.append(server.wait_turn(response.json()["turn_id"])["id"])

    def listed(**params: Any) -> list[list[str]]:
        pages, cursor = [], None
        while True:
            more = {"cursor": cursor} if cursor else {}
            response = server.api("GET", "/api/turns", token=VIEWER,
                                  params={**params, "limit": 2, **more})
            assert response.status_code == 200, response.text
            data = response.json()
            pages.append([t["id"] for t in data["turns"]])
            assert all("payload" not in t for t in data["turns"])
            if not (cursor := data["next_cursor"]):
                return pages

    newest = ids[::-1]
    assert listed(provider="slack") == [newest[0:2], newest[2:4], newest[4:]]
    assert listed(provider="telegram") == [[]]
    assert listed(conversation="C0PAGED") == [[ids[3], ids[1]]]
    assert listed(conversation="C0OTHER") == [[ids[4], ids[2]], [ids[0]]]
    assert listed(conversation="C0OTHER", account="slack-acme", status="delivered") == [
        [ids[4], ids[2]], [ids[0]]]
    assert listed(conversation="C0NOWHERE") == [[]]
