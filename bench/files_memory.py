"""Memory while files flow in and out: N people share a file of SIZE MiB on Slack at once; the
agent downloads each through its signed link and answers with a file of the same size by URL;
Switchboard uploads each into the thread.

Starts the real `switchboard serve` (temporary directory, SQLite), with a fake Slack Web API
and an http agent in this process that generate and check the bytes as they stream (nothing
here holds a file either), and prints the server's RSS (VmRSS, and VmHWM, the peak, from
/proc/PID/status) before and during the flow, with the time it took. Files must stream to
disk: the peak should stay far below N × SIZE.

    /tmp/venv/bin/python bench/files_memory.py                    # 20 files of 20 MiB
    /tmp/venv/bin/python bench/files_memory.py --files 5 --size 4 # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web
from smtp_memory import free_port, memory  # bench/ is this script's directory

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-secret"
CHUNK = 64 * 1024


def block(label: str) -> bytes:
    """64 KiB that differ per file (so the store cannot keep them once)."""
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (CHUNK // len(seed) + 1))[:CHUNK]


async def stream(request: web.Request, label: str, size: int) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": str(size)})
    await response.prepare(request)
    chunk, left = block(label), size
    while left > 0:
        await response.write(chunk[:left])
        left -= CHUNK
    await response.write_eof()
    return response


class Fakes:
    """A Slack Web API (auth.test, chat.postMessage, url_private, the upload methods) and an
    http agent, on one aiohttp server in a thread."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.port = free_port()
        self.downloaded: dict[str, int] = {}  # by the agent, through Switchboard's links
        self.uploaded: dict[str, int] = {}  # by Switchboard, into Slack
        self.posts = 0
        self.pending: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def auth_test(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "user_id": "UBOT", "bot_id": "BBOT",
                                  "team_id": "T1", "user": "bench"})

    async def post_message(self, request: web.Request) -> web.Response:
        self.posts += 1
        return web.json_response({"ok": True, "ts": f"{time.time():.6f}"})

    async def private(self, request: web.Request) -> web.StreamResponse:
        return await stream(request, "in-" + request.match_info["n"], self.size)

    async def agent_blob(self, request: web.Request) -> web.StreamResponse:
        return await stream(request, "out-" + request.match_info["n"], self.size)

    async def get_upload_url(self, request: web.Request) -> web.Response:
        params = {**request.query, **dict(await request.post())}
        file_id = f"F{len(self.pending) + 1:06d}"
        self.pending[file_id] = {"name": params.get("filename"), "size": 0}
        return web.json_response({"ok": True, "file_id": file_id,
                                  "upload_url": f"{self.url}/upload/{file_id}"})

    async def upload(self, request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
        self.pending[request.match_info["id"]]["size"] = size
        return web.Response(text=f"OK - {size}")

    async def complete_upload(self, request: web.Request) -> web.Response:
        params = {**request.query, **dict(await request.post())}
        files = json.loads(str(params.get("files") or "[]"))
        for item in files:
            ticket = self.pending[item["id"]]
            self.uploaded[str(ticket["name"])] = ticket["size"]
        return web.json_response({"ok": True, "files": files})

    async def turn(self, request: web.Request) -> web.Response:
        body = await request.json()
        async with ClientSession() as session:
            for file in body["turn"].get("files", []):
                size = 0
                async with session.get(file["url"]) as response:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        size += len(chunk)
                self.downloaded[file["name"]] = size
        n = body["turn"]["text"].split()[-1]
        return web.json_response({"reply": "here is yours", "files": [
            {"name": f"out-{n}.bin", "type": "application/octet-stream",
             "url": f"{self.url}/agent/blob/{n}"}]})

    def start(self) -> None:
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application(client_max_size=2**31)
            app.router.add_post("/api/auth.test", self.auth_test)
            app.router.add_post("/api/chat.postMessage", self.post_message)
            app.router.add_post("/api/files.getUploadURLExternal", self.get_upload_url)
            app.router.add_post("/api/files.completeUploadExternal", self.complete_upload)
            app.router.add_post("/upload/{id}", self.upload)
            app.router.add_get("/files-pri/T1-{n}/in.bin", self.private)
            app.router.add_get("/agent/blob/{n}", self.agent_blob)
            app.router.add_post("/agent/turn", self.turn)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()

        loop = asyncio.new_event_loop()
        threading.Thread(target=lambda: (loop.create_task(serve()), loop.run_forever()),
                         daemon=True).start()
        ready.wait(10)


def config(fakes: Fakes, size: int) -> str:
    return f"""
agents:
  helper: {{handler: http, url: "{fakes.url}/agent/turn", timeout: 300s}}
accounts:
  slack:
    provider: slack
    bot_token: xoxb-bench
    signing_secret: {SECRET}
    api_url: {fakes.url}/api/
    files: {{max_file_bytes: {size + 1}}}
files: {{fetch_timeout: 300s}}
bindings:
  - {{agent: helper, account: slack, channels: [C0BENCH]}}
"""


def event(n: int, size: int, base: str) -> bytes:
    ts = f"{time.time():.6f}"
    return json.dumps({"type": "event_callback", "event_id": f"EvBench{n}", "team_id": "T1",
                       "event": {"type": "message", "subtype": "file_share", "channel": "C0BENCH",
                                 "channel_type": "channel", "user": "U0BENCH", "ts": ts,
                                 "text": f"file {n}",
                                 "files": [{"id": f"F{n}", "name": f"in-{n}.bin",
                                            "mimetype": "application/octet-stream",
                                            "size": size,
                                            "url_private": f"{base}/files-pri/T1-{n}/in.bin"}]},
                       }).encode()


def send(url: str, body: bytes) -> int:
    stamp = str(int(time.time()))
    signature = "v0=" + hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body,
                                 hashlib.sha256).hexdigest()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size", type=int, default=20, help="MiB per file")
    parser.add_argument("--src", default=str(ROOT / "src"))
    args = parser.parse_args()
    size = args.size * 2**20
    fakes = Fakes(size)
    fakes.start()
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bindings.yaml").write_text(config(fakes, size))
        port = free_port()
        env = {**os.environ, "PYTHONPATH": args.src,
               "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp}/switchboard.db"}
        server = subprocess.Popen(
            [sys.executable, "-m", "switchboard", "serve", "--config", "bindings.yaml",
             "--port", str(port), "--smtp-port", str(free_port()), "--log-level", "warning"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.time() + 30
            while True:
                try:
                    urllib.request.urlopen(base + "/healthz", timeout=1)
                    break
                except OSError:
                    if time.time() > deadline:
                        raise SystemExit("serve did not start") from None
                    time.sleep(0.1)
            time.sleep(1)
            before = memory(server.pid)["VmRSS"]
            started = time.time()
            threads = [threading.Thread(target=send, args=(
                f"{base}/slack/slack/events", event(n, size, fakes.url))) for n in
                range(args.files)]
            for thread in threads:
                thread.start()
            peak_seen = before
            while len(fakes.uploaded) < args.files and time.time() - started < 600:
                peak_seen = max(peak_seen, memory(server.pid)["VmRSS"])
                time.sleep(0.05)
            took = time.time() - started
            now = memory(server.pid)
            complete = sum(v == size for v in fakes.downloaded.values()), \
                sum(v == size for v in fakes.uploaded.values())
            on_disk = sum(p.stat().st_size for p in Path(tmp, "files").rglob("*")
                          if p.is_file()) / 2**20
            print(f"{args.files} files of {args.size} MiB in and {args.files} out "
                  f"in {took:.1f} s: {complete[0]} downloaded whole by the agent, "
                  f"{complete[1]} uploaded whole to Slack, {fakes.posts} text replies")
            print(f"serve RSS: {before:.0f} MiB before, peak {max(now['VmHWM'], peak_seen):.0f}"
                  f" MiB (+{max(now['VmHWM'], peak_seen) - before:.0f} MiB) while "
                  f"{2 * args.files * args.size} MiB flowed; {on_disk:.0f} MiB on disk")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
