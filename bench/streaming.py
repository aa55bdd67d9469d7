"""Streaming benchmark: many concurrent streamed replies through `switchboard serve`.

`--replies` people mention the bot at once, each in a channel of their own; the agent is an
OpenAI-compatible fake that streams `--tokens` tokens at `--rate` tokens/s per reply; the
provider is the fake Slack Web API of the tests (tests/fakes/slack_api.py), with streams,
chat.update and the call log. Defaults are the issue's: 100 replies of 2,000 tokens at 50
tokens/s (40 s each); smaller sizes give the same per-message figures sooner.

    PYTHONPATH=src /tmp/venv/bin/python bench/streaming.py [--replies 100] [--tokens 2000]
        [--rate 50] [--edit-interval 1s] [--json]

Reports: edits per message (stream starts, appends and the final call; must stay within the
throttle: at most one per edit_interval, plus the start and the stop), final-message latency
after the agent's last token (p50/p99), replies delivered, and pacing at the fake: the
smallest gap between two calls to one channel, and how many gaps were shorter than Slack's
1 message/s per channel allows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import hmac
import itertools
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fakes.agents import FakeOpenAI  # noqa: E402
from fakes.slack_api import FakeSlackAPI  # noqa: E402

SECRET = "bench-signing-secret-0123456789abcdef"
MESSAGE_CALLS = ("chat.startStream", "chat.appendStream", "chat.stopStream",
                 "chat.postMessage", "chat.update")
TOLERANCE = 0.05  # seconds: clocks and the fake's own scheduling


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/json"}


def mention(url: str, n: int) -> str:
    event = {"type": "app_mention", "channel": f"CBENCH{n:04d}", "user": f"U{n:05d}",
             "text": f"<@UBOT> bench {n}", "ts": f"1700002000.{n:06d}"}
    body = json.dumps({"type": "event_callback", "team_id": "T1", "event_id": f"EvS{n:06d}",
                       "event": event}).encode()
    response = httpx.post(f"{url}/slack/bench/events", content=body, headers=signed(body),
                          timeout=30)
    response.raise_for_status()
    return str(response.json()["turn_id"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sb-stream-"))
    with FakeSlackAPI() as slack, FakeOpenAI(delay=1 / args.rate) as model:
        model.tokens = [f"t{i} " + ("\n\n" if i % 50 == 49 else "") for i in range(args.tokens)]
        config = work / "bindings.yaml"
        config.write_text(f"""
agents:
  streamer: {{handler: openai, base_url: '{model.url}/v1', timeout: 10m}}
accounts:
  bench:
    provider: slack
    bot_token: xoxb-bench
    signing_secret: {SECRET}
    api_url: "{slack.api_url}"
    edit_interval: {args.edit_interval}
bindings:
  - {{agent: streamer, account: bench}}
delivery: {{workers: {max(16, args.replies)}, agent_concurrency: {max(16, args.replies)}}}
operators:
  - {{name: bench, role: admin, token: bench-admin-token}}
""")
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"),
               "SWITCHBOARD_DATABASE_URL": f"sqlite:///{work / 'sb.db'}"}
        log = (work / "serve.log").open("w")
        server = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--port",
             str(port), "--smtp-port", str(free_port()), "--log-level", "warning"],
            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            started = time.time()
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                list(pool.map(lambda n: mention(url, n), range(args.replies)))
            expected = args.tokens / args.rate
            database = sqlite3.connect(work / "sb.db")
            deadline = started + expected * 2 + 120
            while time.time() < deadline:
                done = database.execute("select count(*) from turns where status in "
                                        "('delivered', 'failed')").fetchone()[0]
                if done >= args.replies:
                    break
                time.sleep(0.5)
            statuses = dict(database.execute(
                "select status, count(*) from turns group by status").fetchall())
        finally:
            server.terminate()
            server.wait(30)
            log.close()
        with slack._lock:
            calls = list(slack.calls)
        return measure(args, calls, dict(model.finished), statuses, time.time() - started)


def measure(args: argparse.Namespace, calls: list[tuple[float, str, dict[str, Any]]],
            finished: dict[str, float], statuses: dict[str, int], elapsed: float
            ) -> dict[str, Any]:
    by_channel: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for at, method, params in calls:
        if method in MESSAGE_CALLS:
            by_channel[str(params.get("channel"))].append((at, method))
    interval = float(args.edit_interval.rstrip("s")) if args.edit_interval.endswith("s") and \
        not args.edit_interval.endswith("ms") else 1.0
    edits, latencies, gaps, over = [], [], [], 0
    for n in range(args.replies):
        seen = sorted(by_channel.get(f"CBENCH{n:04d}", []))
        edits.append(len(seen))
        if seen:  # the start, at most one per interval while it streamed, and the stop
            over += len(seen) > (seen[-1][0] - seen[0][0]) / interval + 2 + TOLERANCE
        gaps += [b[0] - a[0] for a, b in itertools.pairwise(seen)]
        last_token = finished.get(f"<@UBOT> bench {n}")
        if seen and last_token:
            latencies.append(seen[-1][0] - last_token)
    too_close = sum(1 for gap in gaps if gap < 1.0 - TOLERANCE)  # Slack: 1 message/s/channel
    return {
        "replies": args.replies, "tokens": args.tokens, "rate": args.rate,
        "edit_interval": args.edit_interval, "statuses": statuses,
        "elapsed_s": round(elapsed, 1),
        "edits_per_message": {"mean": round(statistics.fmean(edits), 1) if edits else 0,
                              "max": max(edits, default=0), "over_throttle": over},
        "final_latency_s": {"p50": round(percentile(latencies, 0.5), 3),
                            "p99": round(percentile(latencies, 0.99), 3),
                            "measured": len(latencies)},
        "pacing": {"min_gap_s": round(min(gaps), 3) if gaps else None,
                   "gaps_under_limit": too_close},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second per reply")
    parser.add_argument("--edit-interval", default="1s")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    e, lat, pace = result["edits_per_message"], result["final_latency_s"], result["pacing"]
    print(f"{result['replies']} replies x {result['tokens']} tokens at {result['rate']:g}/s, "
          f"edit_interval {result['edit_interval']}: {result['statuses']} in "
          f"{result['elapsed_s']} s")
    print(f"edits per message: mean {e['mean']}, max {e['max']}; {e['over_throttle']} messages "
          "with more than one per edit_interval (plus the start and the stop)")
    print(f"final message after the last token: p50 {lat['p50']} s, p99 {lat['p99']} s "
          f"({lat['measured']} measured)")
    print(f"pacing at the fake: smallest gap {pace['min_gap_s']} s between calls to one "
          f"channel, {pace['gaps_under_limit']} under Slack's 1/s")


if __name__ == "__main__":
    main()
