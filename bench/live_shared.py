"""Live events across processes: two `switchboard serve` on one PostgreSQL database.

Mentions go to process A at `--rate` per second for `--duration` seconds; a client reads
`/api/events` on A and on B. For every event it prints how long it took from being published
in A (the event's `at`, taken where it was published; one machine, one clock) to reaching each
stream: on B that is the cross-process latency, on A the cost of routing A's own events
through the shared table. It checks both streams got the same events under the same ids, each
once.

    PYTHONPATH=src /tmp/venv/bin/python bench/live_shared.py [--rate 50] [--duration 10]
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--json]

A fresh database is created beside the one given (and dropped afterwards).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fakes.slack_api import FakeSlackAPI  # noqa: E402

SECRET = "bench-signing-secret-0123456789abcdef"
TOKEN = "bench-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed(body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/json"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


class Reader:
    """One `/api/events` stream: (received at, id, name, data) per event."""

    def __init__(self, url: str) -> None:
        self.got: list[tuple[float, int, str, dict[str, Any]]] = []
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._read, args=(url,), daemon=True)
        self.thread.start()
        while self.response is None:
            time.sleep(0.01)

    def _read(self, url: str) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            with httpx.stream("GET", f"{url}/api/events", headers=headers,
                              timeout=None) as response:
                self.response = response
                current: dict[str, Any] = {}
                for line in response.iter_lines():
                    if line.startswith("id: "):
                        current["id"] = int(line[4:])
                    elif line.startswith("event: "):
                        current["event"] = line[7:]
                    elif line.startswith("data: "):
                        current["data"] = json.loads(line[6:])
                    elif not line and "event" in current:
                        self.got.append((time.time(), current["id"], current["event"],
                                         current["data"]))
                        current = {}
        except (httpx.HTTPError, AttributeError):
            pass

    def close(self) -> None:
        if self.response is not None:
            self.response.close()

    def latencies(self) -> list[float]:
        return [(seen - datetime.fromisoformat(data["at"].replace("Z", "+00:00")).timestamp())
                * 1000 for seen, _, _, data in self.got]

    def delivered(self) -> set[str]:
        return {data["turn_id"] for _, _, name, data in self.got if name == "turn.delivered"}


def serve(config: Path, url: str, work: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "SWITCHBOARD_DATABASE_URL": url}
    log = (work / f"serve-{name}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--port",
         str(port), "--smtp-port", str(free_port()), "--log-level", "warning"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"serve {name} did not start; see {work}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import psycopg

    from switchboard import db

    work = Path(tempfile.mkdtemp(prefix="sb-live-"))
    name = f"sb_bench_live_{secrets.token_hex(4)}"
    with psycopg.connect(args.database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = args.database_url.rsplit("/", 1)[0] + "/" + name
    processes: list[subprocess.Popen[bytes]] = []
    readers: list[Reader] = []
    try:
        db.upgrade(url)
        with FakeSlackAPI() as slack:
            config = work / "bindings.yaml"
            config.write_text(f"""
agents:
  triager: {{handler: echo, model: small}}
accounts:
  bench:
    provider: slack
    bot_token: xoxb-bench
    signing_secret: {SECRET}
    api_url: "{slack.api_url}"
    pacing: {{conversation: none}}
bindings:
  - {{agent: triager, account: bench, mentions: true}}
operators:
  - {{name: bench, role: admin, token: {TOKEN}}}
""")
            a, a_url = serve(config, url, work, "a")
            b, b_url = serve(config, url, work, "b")
            processes += [a, b]
            on_a, on_b = Reader(a_url), Reader(b_url)
            readers += [on_a, on_b]
            time.sleep(0.5)
            turns, acks = send(a_url, args.rate, args.duration)
            deadline = time.time() + 60
            while time.time() < deadline and not set(turns) <= on_b.delivered():
                time.sleep(0.1)
            time.sleep(0.5)
    finally:
        for reader in readers:
            reader.close()
        for process in processes:
            process.terminate()
            process.wait(30)
        with psycopg.connect(args.database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ids_a = [i for _, i, _, _ in on_a.got]
    ids_b = [i for _, i, _, _ in on_b.got]
    result = {"rate": args.rate, "duration": args.duration, "turns": len(turns),
              "delivered_seen_on_b": len(set(turns) & on_b.delivered()),
              "events_a": len(ids_a), "events_b": len(ids_b),
              "same_ids": ids_a == ids_b, "duplicates": len(ids_b) - len(set(ids_b)),
              "ack_ms": {"p50": percentile(acks, 0.5), "p99": percentile(acks, 0.99)},
              "load_average": os.getloadavg()}
    for label, reader in (("a_own_stream_ms", on_a), ("b_cross_process_ms", on_b)):
        lat = reader.latencies()
        result[label] = {"p50": round(percentile(lat, 0.5), 1),
                         "p99": round(percentile(lat, 0.99), 1),
                         "max": round(max(lat, default=0.0), 1)}
    return result


def send(url: str, rate: float, duration: float) -> tuple[list[str], list[float]]:
    """Mentions to `url`, paced at `rate` per second; their turn ids and ack times (ms)."""
    turns: list[str] = []
    acks: list[float] = []
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=30) as client:
        n = 0
        while time.monotonic() - start < duration:
            due = start + n / rate
            if (wait := due - time.monotonic()) > 0:
                time.sleep(wait)
            event = {"type": "app_mention", "channel": f"CLIVE{n % 16:02d}", "user": "U0ALICE",
                     "text": f"<@UBOT> live {n}", "ts": f"{time.time():.6f}"}
            body = json.dumps({"type": "event_callback", "team_id": "T1", "api_app_id": "A1",
                               "event_id": f"EvL{n:07d}", "event_time": int(time.time()),
                               "event": event}).encode()
            began = time.perf_counter()
            response = client.post("/slack/bench/events", content=body, headers=signed(body))
            acks.append((time.perf_counter() - began) * 1000)
            response.raise_for_status()
            turns.append(response.json()["turn_id"])
            n += 1
    return turns, acks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="mentions per second to A")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of mentions")
    parser.add_argument("--database-url",
                        default=os.environ.get("SWITCHBOARD_TEST_POSTGRES_URL",
                                               "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL database to create the benchmark's beside")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['turns']} mentions to A at {args.rate:g}/s for {args.duration:g} s; "
          f"B saw {result['delivered_seen_on_b']} delivered; events A {result['events_a']}, "
          f"B {result['events_b']}; same ids: {result['same_ids']}; "
          f"duplicates on B: {result['duplicates']}")
    for label in ("a_own_stream_ms", "b_cross_process_ms"):
        figures = result[label]
        print(f"  publish in A -> {label[:-3]}: p50 {figures['p50']} ms, p99 {figures['p99']} "
              f"ms, max {figures['max']} ms")
    print(f"  ack (client-side, sequential) p50 {result['ack_ms']['p50']:.1f} ms, "
          f"p99 {result['ack_ms']['p99']:.1f} ms; load average {result['load_average']}")


if __name__ == "__main__":
    main()
