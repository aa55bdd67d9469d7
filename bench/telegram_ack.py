"""Telegram webhook updates acknowledged per second, and acknowledgement latency.

    python bench/telegram_ack.py [--duration 15] [--connections 32]

Starts a fake Telegram Bot API (tests/fakes/telegram_api.py) and `switchboard serve` on a fresh
SQLite database with an echo agent bound to a Telegram bot, drives distinct private-chat
updates at its webhook with wrk, then waits until every acknowledged update is answered.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from fakes.telegram_api import FakeTelegramAPI  # noqa: E402

SECRET = "bench-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: argparse.Namespace, more_config: str = "", wait: float = 300
        ) -> tuple[dict[str, Any], Path]:
    """Serve an echo agent on a Telegram account (plus `more_config`), flood its webhook with
    wrk for `args.duration` seconds, then wait up to `wait` seconds for the replies: wrk's
    figures with `acked`, `replies` and `drain` (seconds), and the work folder (`bench.db`)."""
    work = Path(tempfile.mkdtemp(prefix="switchboard-tg-bench-"))
    with FakeTelegramAPI() as fake:
        config = work / "bindings.yaml"
        config.write_text(f"""
agents:
  triager: {{handler: echo}}
accounts:
  tg: {{provider: telegram, token: "123:bench", webhook_secret: {SECRET},
        base_url: "{fake.base_url}"}}
bindings:
  - {{agent: triager, account: tg}}
operators:
  - {{name: bench, role: admin, token: bench-token}}
{more_config}""")
        port = free_port()
        log = (work / "serve.log").open("wb")
        serve = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--port",
             str(port), "--smtp-port", str(free_port()), "--log-level", "warning"],
            cwd=work, stdout=log, stderr=subprocess.STDOUT,
            env={"SWITCHBOARD_DATABASE_URL": f"sqlite:///{work / 'bench.db'}",
                 "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")})
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            wrk = subprocess.run(
                ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration:g}s",
                 "--latency", "-s", str(ROOT / "bench" / "update.lua"),
                 f"{url}/telegram/tg/webhook", "--", SECRET],
                capture_output=True, text=True, check=True)
            found = re.search(r"^BENCH_JSON (.*)$", wrk.stdout, re.MULTILINE)
            assert found, wrk.stdout + wrk.stderr
            data = json.loads(found.group(1))
            data["acked"] = acked = data["requests"] - data["non2xx"]
            started = time.time()
            while len(fake.calls("sendMessage")) < acked and time.time() - started < wait:
                time.sleep(0.5)
            data["replies"] = len(fake.calls("sendMessage"))
            data["drain"] = time.time() - started
        finally:
            serve.terminate()
            serve.wait(30)
    return data, work


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data, _ = run(args)
    acked, replies, drain = data["acked"], data["replies"], data["drain"]
    seconds = data["duration_us"] / 1e6
    lat = {k: v / 1000 for k, v in data["latency_us"].items()}
    print(f"{'':12}{'acks/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'replies/s':>11}"
          f"{'acks':>8}{'replies':>9}{'non2xx':>8}")
    print(f"{'telegram':12}{acked / seconds:>8.0f}{lat['p50']:>9.1f}{lat['p99']:>9.1f}"
          f"{lat['max']:>9.1f}{replies / (seconds + drain):>11.0f}{acked:>8}{replies:>9}"
          f"{data['non2xx']:>8}")
    print(f"every acknowledged update answered: {'yes' if replies >= acked else 'NO'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
