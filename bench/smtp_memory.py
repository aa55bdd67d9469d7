"""SMTP server memory under stalled DATA: N sessions each send ~9 MB and stop before the final dot.

Starts the real `switchboard serve` (temporary directory, SQLite, one email account with a
declared inbox), opens the sessions on 127.0.0.1, and prints the server's RSS (VmRSS from
/proc/PID/status) before, while the sessions stall, and after they are gone. With --finish the
sessions send their final dot instead of hanging up, and the answers are counted.

    /tmp/venv/bin/python bench/smtp_memory.py                      # this checkout's src/
    /tmp/venv/bin/python bench/smtp_memory.py --src /work/main/src # another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INBOX = "triager@agents.localhost"
CONFIG = """
agents:
  triager: {handler: echo}
accounts:
  mail:
    provider: email
    domain: agents.localhost
    maildir: ./outbound-mail
    inboxes: {triager: triager}
bindings:
  - {agent: triager, account: mail}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (the peak) of a process, in MiB."""
    found: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found


def settled(pid: int, quiet: float = 1.5, limit: float = 120.0) -> dict[str, float]:
    """The RSS once it has stopped moving by more than 1 MiB for `quiet` seconds."""
    started = last_change = time.monotonic()
    last = memory(pid)["VmRSS"]
    while time.monotonic() - last_change < quiet and time.monotonic() - started < limit:
        time.sleep(0.25)
        now = memory(pid)["VmRSS"]
        if abs(now - last) > 1:
            last, last_change = now, time.monotonic()
    return memory(pid)


def body(megabytes: float) -> bytes:
    """A message as mail clients send attachments: base64 in 76-character lines."""
    head = (f"From: you@example.com\r\nTo: {INBOX}\r\nSubject: big\r\n"
            "MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n").encode()
    line = b"QUJD" * 19 + b"\r\n"
    return head + line * int(megabytes * 1_000_000 / len(line))


async def reply(reader: asyncio.StreamReader) -> str:
    while True:
        line = await reader.readline()
        if not line or line[3:4] != b"-":
            return line.decode(errors="replace").strip()


async def stall(port: int, data: bytes, sent: asyncio.Event, go: asyncio.Event,
                finish: bool, answers: list[str]) -> None:
    """One session: the envelope, DATA without the final dot, then (on `go`) dot or hang-up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:  # `sent` is set however the session goes, so the load never waits for a dead one
        greeting = await reply(reader)
        if not greeting.startswith("220"):
            answers.append(greeting or "closed")
            return
        for command in ("EHLO bench.test", "MAIL FROM:<you@example.com>", f"RCPT TO:<{INBOX}>",
                        "DATA"):
            writer.write(command.encode() + b"\r\n")
            answer = await reply(reader)
            if not answer.startswith(("250", "354")):
                answers.append(answer)
                return
        view = memoryview(data)
        for start in range(0, len(view), 65536):
            writer.write(view[start:start + 65536])
            await writer.drain()
        sent.set()
        await go.wait()
        if finish:
            writer.write(b".\r\n")
            answers.append(await asyncio.wait_for(reply(reader), 120))
            writer.write(b"QUIT\r\n")
    finally:
        sent.set()
        writer.close()


async def load(port: int, sessions: int, megabytes: float, finish: bool,
               pid: int) -> dict[str, object]:
    data = body(megabytes)
    go = asyncio.Event()
    sent = [asyncio.Event() for _ in range(sessions)]
    answers: list[str] = []
    tasks = [asyncio.create_task(stall(port, data, sent[i], go, finish, answers))
             for i in range(sessions)]
    started = time.monotonic()
    await asyncio.gather(*(event.wait() for event in sent))  # every session stalls or ended
    during = await asyncio.to_thread(settled, pid)
    send_seconds = time.monotonic() - started
    go.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"during": during, "send_seconds": round(send_seconds, 1),
            "answers": dict(collections.Counter(a[:9] for a in answers))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--megabytes", type=float, default=9.0, help="DATA per session")
    parser.add_argument("--src", default=str(ROOT / "src"), help="the src/ to benchmark")
    parser.add_argument("--finish", action="store_true",
                        help="send the final dots (and count the answers) instead of hanging up")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="smtp-memory-") as work:
        config = Path(work, "bindings.yaml")
        config.write_text(CONFIG)
        http, smtp = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": args.src,
               "SWITCHBOARD_DATABASE_URL": f"sqlite:///{work}/switchboard.db"}
        log = open(Path(work, "serve.log"), "wb")  # noqa: SIM115
        server = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "serve", "--config", str(config),
             "--port", str(http), "--smtp-port", str(smtp), "--log-level", "warning"],
            cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1)
                    break
                except OSError:
                    if time.time() > deadline or server.poll() is not None:
                        raise SystemExit(Path(work, "serve.log").read_text()) from None
                    time.sleep(0.2)
            before = settled(server.pid)
            result = asyncio.run(load(smtp, args.sessions, args.megabytes, args.finish,
                                      server.pid))
            time.sleep(3)  # let the server notice the hang-ups and free what it held
            after = settled(server.pid)
        finally:
            server.terminate()
            server.wait(20)
            log.close()
    figures = {"src": args.src, "sessions": args.sessions, "megabytes": args.megabytes,
               "finish": args.finish, "rss_before_mib": round(before["VmRSS"], 1),
               "rss_during_mib": round(result["during"]["VmRSS"], 1),  # type: ignore[index]
               "rss_after_mib": round(after["VmRSS"], 1), "peak_mib": round(after["VmHWM"], 1),
               "send_seconds": result["send_seconds"], "answers": result["answers"]}
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{args.sessions} sessions x {args.megabytes:g} MB DATA, stalled before the final dot "
          f"({'then finished' if args.finish else 'then hung up'}); src {args.src}")
    print(f"  server RSS before  {figures['rss_before_mib']:8.1f} MiB")
    print(f"  server RSS during  {figures['rss_during_mib']:8.1f} MiB   "
          f"(sent in {figures['send_seconds']} s)")
    print(f"  server RSS after   {figures['rss_after_mib']:8.1f} MiB   "
          f"(peak {figures['peak_mib']:.1f} MiB)")
    if figures["answers"]:
        print(f"  answers: {figures['answers']}")


if __name__ == "__main__":
    main()
