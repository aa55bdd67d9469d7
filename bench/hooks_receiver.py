"""A webhook receiver that never answers does not slow acknowledgements.

    python bench/hooks_receiver.py [--duration 10] [--connections 32]

Runs `switchboard serve` twice on fresh SQLite databases against a fake Telegram Bot API
(tests/fakes/telegram_api.py), each time driving distinct private-chat updates at its webhook
with wrk (bench/update.lua): once with no `webhooks:`, once with a webhook for every event
(`"*"`) pointing at a receiver that accepts connections and never answers (every POST waits
out its 10 s timeout, then is retried). Prints acks/s and ack latency of both, the replies
delivered, and the webhook deliveries written and attempted.
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import threading
from typing import Any

import telegram_ack  # the same flood (bench/ is the script's folder, first on sys.path)


class SilentReceiver:
    """Accepts every connection and holds it open without reading or answering."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.held: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hooks"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self.sock.close()
        for connection in self.held:
            connection.close()


def run(args: argparse.Namespace, hook_url: str | None) -> dict[str, Any]:
    hooks = f"""
webhooks:
  - {{url: "{hook_url}", events: ["*"], secret: bench-hook-secret}}
""" if hook_url else ""
    data, work = telegram_ack.run(args, hooks, wait=120)
    with sqlite3.connect(work / "bench.db") as db:
        data["hooks"] = dict(db.execute(
            "SELECT state, count(*) FROM hook_deliveries GROUP BY state").fetchall())
        data["hook_attempts"] = db.execute("SELECT count(*) FROM hook_attempts").fetchone()[0]
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    receiver = SilentReceiver()
    try:
        rows = [("no webhooks", run(args, None)),
                ("silent receiver", run(args, receiver.url))]
    finally:
        receiver.close()
    print(f"{'':16}{'acks/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'acks':>8}"
          f"{'replies':>9}{'deliveries':>12}{'attempts':>10}")
    for name, data in rows:
        seconds = data["duration_us"] / 1e6
        lat = {k: v / 1000 for k, v in data["latency_us"].items()}
        print(f"{name:16}{data['acked'] / seconds:>8.0f}{lat['p50']:>9.1f}{lat['p99']:>9.1f}"
              f"{lat['max']:>9.1f}{data['acked']:>8}{data['replies']:>9}"
              f"{sum(data['hooks'].values()):>12}{data['hook_attempts']:>10}")
    print("deliveries by state (silent receiver):", rows[1][1]["hooks"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
