"""Slack acknowledgement benchmark: Switchboard `serve` against a bare slack-bolt `AsyncApp`.

Both servers get the same load, one after the other (never both at once): wrk over 32
connections posting distinct, correctly signed `app_mention` events (pre-generated here, sent by
bench/mention.lua), and both reply through the same fake Slack Web API (bench/fake_slack.py),
which runs in its own process and counts the replies.

Per row: acknowledgements per second (2xx answers only), ack latency p50/p99 (wrk --latency),
replies delivered and replies per second (from the first request of the measured run to the
last reply), and whether every acknowledged event got its reply. For Switchboard the database
(SQLite, or PostgreSQL with --database-url) is cross-checked (turns by status, received →
delivered lag).

    /tmp/venv/bin/python bench/slack_ack.py --duration 15 [--json]

With `--processes N` (PostgreSQL only) the Switchboard row runs N `serve` processes on one
database, each on its own ports, and N wrk instances at once split the load between them.

Targets (from the issue): Switchboard acks/s >= bare bolt acks/s, Switchboard ack p99 < 50 ms,
every reply delivered.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LUA = BENCH / "mention.lua"
SECRET = "bench-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-bench"
ACCOUNT = "slack-acme"
P99_TARGET_MS = 50.0


# --- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_json(method: str, url: str, body: bytes | None = None,
              headers: dict[str, str] | None = None, timeout: float = 5.0
              ) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = int(response.status)
    except urllib.error.HTTPError as error:
        raw = error.read()
        status = error.code
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        data = {"raw": raw.decode(errors="replace")}
    return status, data if isinstance(data, dict) else {"value": data}


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            status, _ = http_json("GET", url, timeout=1.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s")


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class FakeSlack:
    """bench/fake_slack.py in its own process, so it does not share a GIL with the load."""

    def __init__(self, workdir: Path) -> None:
        port_file = workdir / "fake.port"
        self.log = (workdir / "fake.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "fake_slack.py"), "--port-file", str(port_file)],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fake Slack API did not start; see {workdir}/fake.log")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{int(port_file.read_text())}"
        self.api_url = f"{self.base}/api/"

    def count(self) -> dict[str, Any]:
        return http_json("GET", f"{self.base}/count")[1]

    def reset(self) -> None:
        http_json("POST", f"{self.base}/reset", b"")

    def close(self) -> None:
        stop(self.process, 5)
        self.log.close()


# --- load ----------------------------------------------------------------------------------------


class Events:
    """Distinct event ids and message ts across the whole bench run."""

    def __init__(self, channels: int) -> None:
        self.seq = 0
        self.base = int(time.time())
        self.channels = channels

    def signed(self, tag: str) -> tuple[str, str, str]:
        """(timestamp, signature, body) of one new app_mention event."""
        self.seq += 1
        seq = self.seq
        now = int(time.time())
        ts = f"{self.base + seq // 1_000_000}.{seq % 1_000_000:06d}"
        channel = f"CBENCH{seq % self.channels:03d}"
        user = f"U{seq % 97:05d}"
        body = json.dumps({
            "token": "legacy-verification-token", "team_id": "T1", "api_app_id": "ABENCH",
            "type": "event_callback", "event_id": f"Ev{tag}{seq:09d}", "event_time": now,
            "event": {"type": "app_mention", "user": user, "text": f"<@UBOT> ping {seq}",
                      "ts": ts, "channel": channel, "event_ts": ts, "channel_type": "channel",
                      "team": "T1"},
            "authorizations": [{"enterprise_id": None, "team_id": "T1", "user_id": "UBOT",
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }, separators=(",", ":"))
        stamp = str(now)
        digest = hmac.new(SECRET.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256)
        return stamp, f"v0={digest.hexdigest()}", body

    def write(self, prefix: Path, count: int, threads: int, tag: str) -> None:
        """`count` requests split over one file per wrk thread (PREFIX.0, PREFIX.1, ...)."""
        files = [prefix.with_name(f"{prefix.name}.{t}").open("w") for t in range(threads)]
        try:
            for i in range(count):
                files[i % threads].write("\t".join(self.signed(tag)) + "\n")
        finally:
            for f in files:
                f.close()


@dataclass
class WrkResult:
    requests: int
    duration_s: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    wrapped: int
    threads: list[dict[str, int]]
    cpu_s: float
    text: str

    @property
    def acks(self) -> int:
        return self.requests - self.errors.get("status", 0)


def wrk_command(url: str, script: Path, script_args: list[str], *, threads: int,
                connections: int, duration: float, timeout_s: float = 10.0) -> list[str]:
    return ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
            f"--timeout={timeout_s:g}s", "-s", str(script), url, "--", *script_args]


def parse_wrk(stdout: str, stderr: str, returncode: int, cpu_s: float = 0.0) -> WrkResult:
    """The BENCH_JSON line the bench's Lua scripts print in done()."""
    found = re.search(r"^BENCH_JSON (.*)$", stdout, re.MULTILINE)
    if returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({returncode}):\n{stdout}\n{stderr}")
    data = json.loads(found.group(1))
    return WrkResult(
        requests=data["requests"], duration_s=data["duration_us"] / 1e6, errors=data["errors"],
        latency_ms={k: (v / 1000.0) for k, v in data["latency_us"].items()},
        wrapped=data["wrapped"], threads=data["threads"], cpu_s=cpu_s,
        text=stdout.split("BENCH_JSON", 1)[0].rstrip())


def run_wrk(url: str, prefix: Path, *, threads: int, connections: int, duration: float,
            timeout_s: float = 10.0) -> WrkResult:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = wrk_command(url, LUA, [str(prefix)], threads=threads, connections=connections,
                          duration=duration, timeout_s=timeout_s)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_wrk(done.stdout, done.stderr, done.returncode, cpu)


@dataclass
class WrkJob:
    """One wrk instance of a split load: its server, its own event files, its share."""

    url: str
    prefix: Path
    threads: int
    connections: int


def split_load(connections: int, threads: int, parts: int) -> list[tuple[int, int]]:
    """(threads, connections) of each of `parts` wrk instances sharing the load: the
    connections split as evenly as they go, max(1, threads / parts) threads each."""
    if parts == 1:
        return [(threads, connections)]
    base, extra = divmod(connections, parts)
    shares = [base + (1 if i < extra else 0) for i in range(parts)]
    return [(min(max(1, threads // parts), share), share) for share in shares]


def run_wrks(jobs: list[WrkJob], duration: float, timeout_s: float = 10.0
             ) -> tuple[WrkResult, list[WrkResult]]:
    """The jobs' wrk instances at once; (their figures combined, each one's). One job is
    run_wrk. Combined: requests, errors and wraps summed over the instances, the duration the
    longest of theirs (they start together), the latency percentiles the worst instance's
    (wrk gives percentiles per instance and they cannot be merged exactly), the CPU all of them
    used (children's rusage across the lot: nothing else of the bench's ends meanwhile)."""
    if len(jobs) == 1:
        job = jobs[0]
        result = run_wrk(job.url, job.prefix, threads=job.threads,
                         connections=job.connections, duration=duration, timeout_s=timeout_s)
        return result, [result]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    processes: list[subprocess.Popen[str]] = []
    try:
        for job in jobs:
            processes.append(subprocess.Popen(
                wrk_command(job.url, LUA, [str(job.prefix)], threads=job.threads,
                            connections=job.connections, duration=duration,
                            timeout_s=timeout_s),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outputs = [process.communicate() for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(5)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    each = [parse_wrk(out, err, process.returncode)
            for (out, err), process in zip(outputs, processes, strict=True)]
    errors: Counter[str] = Counter()
    for result in each:
        errors.update(result.errors)
    combined = WrkResult(
        requests=sum(r.requests for r in each), duration_s=max(r.duration_s for r in each),
        errors={k: errors[k] for k in each[0].errors},
        latency_ms={k: max(r.latency_ms[k] for r in each) for k in each[0].latency_ms},
        wrapped=sum(r.wrapped for r in each), threads=[t for r in each for t in r.threads],
        cpu_s=cpu, text="\n\n".join(f"[wrk #{i}]\n{r.text}" for i, r in enumerate(each)))
    return combined, each


def stop_all(processes: list[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    """`stop` for several at once: each is told to stop before any is waited for."""
    if len(processes) == 1:
        stop(processes[0], grace)
        return
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Instance:
    """One server process of a row: its command and where it answers."""

    command: list[str]
    events_url: str
    health_url: str
    port: int = 0


@dataclass
class Server:
    name: str
    command: list[str]  # the first (or only) process's; `instances` has them all
    env: dict[str, str]
    events_url: str
    health_url: str
    database: Path | None = None  # the SQLite file, cross-checked
    database_url: str | None = None  # the PostgreSQL database (--database-url), cross-checked
    instances: list[Instance] = field(default_factory=list)
    migrate: list[str] | None = None  # run once before the processes start (--processes N > 1)

    def __post_init__(self) -> None:
        if not self.instances:
            self.instances = [Instance(self.command, self.events_url, self.health_url)]


def distinct_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def switchboard_server(workdir: Path, api_url: str, session_scope: str,
                       src: str | None = None, database_url: str | None = None,
                       processes: int = 1) -> Server:
    """`serve` with one echo agent and one Slack account; with `processes` > 1 (PostgreSQL
    only) that many processes of the same config on the same database, each on its own HTTP
    and SMTP ports, the schema migrated once beforehand (`switchboard db upgrade`)."""
    if processes > 1 and not database_url:
        raise ValueError("more than one Switchboard process needs a PostgreSQL --database-url")
    ports = distinct_ports(2 * processes)
    config = workdir / "bindings.yaml"
    # The bare bolt app does not pace its replies, so neither does this row: both do the same
    # work (with Slack's 1 message/s per channel, 16 channels would cap replies at 16/s).
    # Checkouts from before pacing (--switchboard-src) have no such key.
    tree = Path(src) if src else REPO / "src"
    unpaced = "\n    pacing: {conversation: none}" if (tree / "channels/live.py").exists() \
        else ""
    config.write_text(f"""\
agents:
  triager:
    handler: echo
accounts:
  {ACCOUNT}:
    provider: slack
    bot_token: {BOT_TOKEN}
    signing_secret: {SECRET}
    api_url: {api_url}
    mode: http{unpaced}
bindings:
  - name: triage-slack
    agent: triager
    account: {ACCOUNT}
    dm: true
    mentions: true
    session_scope: {session_scope}
operators:
  - name: bench
    role: admin
    token: bench-token
""")
    database = workdir / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": database_url or f"sqlite:///{database}"}
    if src:  # another checkout's src/ ahead of the installed (editable) one
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(src).resolve()), env.get("PYTHONPATH", "")) if p)
    instances = [
        Instance(command=[sys.executable, "-m", "switchboard", "serve", "--config", str(config),
                          "--port", str(port), "--smtp-port", str(smtp_port),
                          "--log-level", "warning"],
                 events_url=f"http://127.0.0.1:{port}/slack/{ACCOUNT}/events",
                 health_url=f"http://127.0.0.1:{port}/healthz", port=port)
        for port, smtp_port in zip(ports[::2], ports[1::2], strict=True)]
    first = instances[0]
    return Server(
        name="switchboard" if processes == 1 else f"switchboard x{processes}",
        command=first.command, env=env, events_url=first.events_url,
        health_url=first.health_url, database=None if database_url else database,
        database_url=database_url, instances=instances,
        migrate=[sys.executable, "-m", "switchboard", "db", "upgrade", "--config", str(config)]
        if processes > 1 else None)


def bare_server(api_url: str) -> Server:
    port = free_port()
    return Server(
        name="bare bolt",
        command=[sys.executable, str(BENCH / "bare_bolt.py"), "--port", str(port),
                 "--api-url", api_url, "--signing-secret", SECRET, "--bot-token", BOT_TOKEN],
        env=dict(os.environ), events_url=f"http://127.0.0.1:{port}/slack/events",
        health_url=f"http://127.0.0.1:{port}/healthz")


# --- one row -------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    acks: int = 0
    duration_s: float = 0.0
    acks_per_s: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    replies: int = 0
    replies_per_s: float = 0.0
    last_reply_after_s: float = 0.0
    every_reply: bool = False
    wrapped: int = 0
    machine_busy_before: float | None = None
    server_cpu: float = 0.0  # cores the server used during the measured run
    wrk_cpu: float = 0.0  # cores wrk used
    fake_cpu: float = 0.0  # cores the fake Web API used
    others_cpu: float = 0.0  # cores everything else on the machine used
    rss_before_mb: float = 0.0  # the server's resident memory just before the measured run
    rss_load_mb: float = 0.0  # its peak while wrk ran
    rss_catchup_mb: float = 0.0  # its peak from the end of the load until the replies settled
    rss_after_mb: float = 0.0  # once the replies settled
    # --processes N > 1: the cpu and rss_* figures above are sums over the processes, the
    # latencies the worst wrk instance's; here each process and its wrk instance alone
    processes: int = 1
    per_process: list[dict[str, Any]] = field(default_factory=list)
    db: dict[str, Any] = field(default_factory=dict)
    stderr: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def cpu_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, summed over CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields) - idle) / tick, sum(fields) / tick


def machine_busy(seconds: float = 1.0) -> float | None:
    """Share of all CPUs busy over `seconds` while the bench itself is idle: other work on the
    machine skews every figure."""
    try:
        busy0, total0 = cpu_times()
        time.sleep(seconds)
        busy1, total1 = cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / max(1e-9, total1 - total0)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """The process's resident memory now (VmRSS), in MB; 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) / 1024 if found else 0.0


class RssSampler:
    """Samples a process's VmRSS every `every` s in a thread; `peak()` is the largest since
    the last `peak()` (the load, then the catch-up)."""

    def __init__(self, pid: int, every: float = 0.1) -> None:
        self.pid, self.every = pid, every
        self._peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._peak = max(self._peak, rss_mb(self.pid))

    def peak(self) -> float:
        peak, self._peak = max(self._peak, rss_mb(self.pid)), 0.0
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


UNFINISHED = ("select count(*) from turns where status not in "
              "('delivered', 'failed', 'ignored', 'duplicate')")


def wait_for_replies(fake: FakeSlack, expected: int, *, timeout: float, settle: float,
                     database: Path | None = None, quiet: float = 2.0,
                     unfinished: Callable[[], int] | None = None) -> dict[str, Any]:
    """Until the fake has `expected` replies and then nothing new for `quiet` s (requests that
    were in flight when wrk stopped are answered too), and, with a database (a SQLite file, or
    `unfinished` counting the turns still on their way), no turn is still on its way; or until
    the count stops growing for `settle` s, or `timeout`."""
    if unfinished is None and database is not None:
        sqlite_file = database

        def unfinished() -> int:
            return unfinished_turns(sqlite_file)
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while True:
        counts = fake.count()
        now = time.monotonic()
        if counts["posts"] != last:
            last, since = counts["posts"], now
        if now > deadline or now - since > settle:
            return counts
        if (counts["posts"] >= expected and now - since >= quiet
                and (unfinished is None or unfinished() == 0)):
            return counts
        time.sleep(0.2)


def unfinished_turns(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute(UNFINISHED).fetchone()[0])


def pg_conninfo(url: str) -> str:
    """A libpq URL for psycopg from a SQLAlchemy-style one (postgresql+psycopg://...)."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.split("+")[0] in {"postgresql", "postgres"} \
        else url


def pg_unfinished_turns(url: str) -> int:
    import psycopg

    with psycopg.connect(pg_conninfo(url), connect_timeout=10) as db:
        found = db.execute(UNFINISHED).fetchone()
    return int(found[0]) if found else 0


def pg_crosscheck(url: str, tag: str) -> dict[str, Any]:
    """sqlite_crosscheck on PostgreSQL: turns by status; received → delivered lag of the
    measured run's turns (over every process's turns: they share the database)."""
    import psycopg

    with psycopg.connect(pg_conninfo(url), connect_timeout=10) as db:
        statuses = {str(k): v for k, v in db.execute(
            "select status, count(*) from turns group by status").fetchall()}
        deliveries = {str(k): v for k, v in db.execute(
            "select delivery_status, count(*) from turns group by delivery_status").fetchall()}
        measured = db.execute(
            "select count(*), count(*) filter (where status = 'delivered') from turns "
            "where event_id like %s", (f"Ev{tag}%",)).fetchone()
        rows = db.execute(
            "select extract(epoch from d.at - r.at) * 1000 from turns t "
            "join turn_events r on r.turn_id = t.id and r.name = 'received' "
            "join turn_events d on d.turn_id = t.id and d.name = 'delivered' "
            "where t.event_id like %s", (f"Ev{tag}%",)).fetchall()
    total, delivered = measured if measured else (0, 0)
    return _crosscheck(statuses, deliveries, total, delivered,
                       [float(lag) for (lag,) in rows])


def scan_stderr(path: Path) -> dict[str, Any]:
    """What the server complained about: counts by kind and a few distinct samples."""
    kinds: Counter[str] = Counter()
    samples: list[str] = []
    seen: set[str] = set()
    for line in path.read_text(errors="replace").splitlines():
        lowered = line.lower()
        kind = ("database is locked" if "database is locked" in lowered
                else "traceback" if line.startswith("Traceback")
                else "error" if " ERROR " in line or " CRITICAL " in line
                else "warning" if " WARNING " in line
                else None)
        if kind is None:
            continue
        kinds[kind] += 1
        key = re.sub(r"^\S+ \S+ ", "", line)  # without the asctime
        key = re.sub(r"\b(turn|ses|sess)_\w+|\d+", "#", key)
        if key not in seen and len(samples) < 6:
            seen.add(key)
            samples.append(line[:300])
    return {"counts": dict(kinds), "samples": samples}


def sqlite_crosscheck(database: Path, tag: str) -> dict[str, Any]:
    """Turns by status; received → delivered lag of the measured run's turns."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        statuses = dict(db.execute("select status, count(*) from turns group by status"))
        deliveries = {str(k): v for k, v in db.execute(
            "select delivery_status, count(*) from turns group by delivery_status")}
        measured = db.execute("select count(*), sum(status = 'delivered') from turns "
                              "where event_id like ?", (f"Ev{tag}%",)).fetchone()
        rows = db.execute(
            "select r.at, d.at from turns t "
            "join turn_events r on r.turn_id = t.id and r.name = 'received' "
            "join turn_events d on d.turn_id = t.id and d.name = 'delivered' "
            "where t.event_id like ?", (f"Ev{tag}%",)).fetchall()
    return _crosscheck(statuses, deliveries, measured[0], measured[1],
                       [(_when(d) - _when(r)).total_seconds() * 1000 for r, d in rows])


def _crosscheck(statuses: dict[str, Any], deliveries: dict[str, Any], total: int,
                delivered: int | None, lags_ms: list[float]) -> dict[str, Any]:
    """The cross-check's answer, from either database: turns by status and delivery status,
    the measured run's turns delivered, received → delivered lag percentiles."""
    lags = sorted(lags_ms)
    return {"turns_by_status": statuses, "turns_by_delivery_status": deliveries,
            "measured_turns": total, "measured_delivered": delivered or 0,
            "reply_lag_ms": {"p50": _pct(lags, 50), "p99": _pct(lags, 99),
                             "max": round(lags[-1], 1) if lags else 0.0}}


def _when(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    return round(values[min(len(values) - 1, int(len(values) * p / 100))], 1)


def stderr_paths(server: Server, workdir: Path) -> list[Path]:
    """Each process's stderr file: SLUG.stderr for one, SLUG.0.stderr, SLUG.1.stderr, ..."""
    slug = server.name.replace(" ", "_")
    if len(server.instances) == 1:
        return [workdir / f"{slug}.stderr"]
    return [workdir / f"{slug}.{i}.stderr" for i in range(len(server.instances))]


def scan_stderrs(paths: list[Path]) -> dict[str, Any]:
    """scan_stderr over each process's file, summed (samples marked with the process's #)."""
    if len(paths) == 1:
        found = scan_stderr(paths[0]) if paths[0].exists() else {"counts": {}, "samples": []}
        found["file"] = str(paths[0])
        return found
    counts: Counter[str] = Counter()
    samples: list[str] = []
    for i, path in enumerate(paths):
        if not path.exists():
            continue
        found = scan_stderr(path)
        counts.update(found["counts"])
        samples += [f"[#{i}] {sample}" for sample in found["samples"]]
    return {"counts": dict(counts), "samples": samples[:6],
            "file": ", ".join(str(path) for path in paths)}


def start_servers(server: Server, workdir: Path, files: list[BinaryIO],
                  say: Callable[[str], None]) -> list[subprocess.Popen[bytes]]:
    """The row's processes, healthy. Several (on one PostgreSQL database): the schema is
    migrated once first (`serve` migrates at start, and two migrating a fresh database at once
    could race: Alembic takes no lock), then they start one after the other, each answering
    before the next starts (so nothing else a process does at start runs beside another's)."""
    if server.migrate:
        done = subprocess.run(server.migrate, env=server.env, cwd=workdir, capture_output=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"`switchboard db upgrade` failed ({done.returncode}):\n"
                               + "\n".join(done.stderr.decode(errors="replace")
                                           .splitlines()[-4:]))
        say("database migrated (switchboard db upgrade)")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for instance, out in zip(server.instances, files, strict=True):
            process = subprocess.Popen(instance.command, env=server.env, stdout=out, stderr=out,
                                       cwd=workdir)
            processes.append(process)
            wait_healthy(instance.health_url, process)
    except BaseException:
        stop_all(processes)
        raise
    return processes


def run_row(server: Server, fake: FakeSlack, events: Events, workdir: Path,
            args: argparse.Namespace, log: TextIO) -> Row:
    row = Row(server.name, processes=len(server.instances))
    deadline = time.monotonic() + args.wait_quiet
    row.machine_busy_before = machine_busy()
    while (row.machine_busy_before is not None and row.machine_busy_before > 0.1
           and time.monotonic() < deadline):
        row.machine_busy_before = machine_busy(2.0)
    if row.machine_busy_before is not None and row.machine_busy_before > 0.1:
        row.notes.append(f"the machine was {row.machine_busy_before:.0%} busy with other work "
                         "just before this row: figures are skewed")
    slug = server.name.replace(" ", "_")
    paths = stderr_paths(server, workdir)
    several = len(server.instances) > 1
    unfinished: Callable[[], int] | None = None
    if server.database is not None:
        sqlite_file = server.database

        def unfinished() -> int:
            return unfinished_turns(sqlite_file)
    elif server.database_url:
        pg_url = server.database_url

        def unfinished() -> int:
            return pg_unfinished_turns(pg_url)

    def say(text: str) -> None:
        print(f"[{server.name}] {text}", file=log, flush=True)

    def jobs(stage: str, total: int, tag: str) -> list[WrkJob]:
        """Each process's wrk job, with its own slice of `total` new events (disjoint)."""
        out: list[WrkJob] = []
        split = split_load(args.connections, args.threads, len(server.instances))
        for i, (instance, (threads, connections)) in enumerate(
                zip(server.instances, split, strict=True)):
            prefix = workdir / (f"{slug}.{stage}" if not several else f"{slug}.{i}.{stage}")
            events.write(prefix, math.ceil(total * connections / args.connections), threads,
                         tag)
            out.append(WrkJob(instance.events_url, prefix, threads, connections))
        return out

    with contextlib.ExitStack() as files:
        outs = [files.enter_context(path.open("wb")) for path in paths]
        processes: list[subprocess.Popen[bytes]] = []
        profilers: list[subprocess.Popen[bytes]] = []
        try:
            processes = start_servers(server, workdir, outs, say)
            say(f"up (pid {', '.join(str(p.pid) for p in processes)}); sanity request")
            for instance in server.instances:
                stamp, signature, body = events.signed("S")
                status, answer = http_json("POST", instance.events_url, body.encode(), {
                    "Content-Type": "application/json", "X-Slack-Request-Timestamp": stamp,
                    "X-Slack-Signature": signature})
                if status != 200:
                    raise RuntimeError(f"{server.name} answered {status} {answer} to a signed "
                                       "event")
            expected_before = len(server.instances)
            if args.warmup > 0:
                warm_jobs = jobs("warmup", int(args.warmup * args.max_rate), "W")
                say(f"warm-up {args.warmup:g}s")
                warm, _ = run_wrks(warm_jobs, args.warmup)
                expected_before += warm.acks
            counts = wait_for_replies(fake, expected_before, timeout=args.reply_timeout,
                                      settle=args.settle, unfinished=unfinished)
            if counts["posts"] < expected_before:
                row.notes.append(f"warm-up: {counts['posts']} replies for {expected_before} "
                                 "acknowledged events")
            fake.reset()
            total = int(args.duration * args.max_rate)
            run_jobs = jobs("run", total, "M")
            if args.profile and shutil.which("py-spy"):
                for i, process in enumerate(processes):
                    out = workdir / (f"{slug}.folded" if not several else f"{slug}.{i}.folded")
                    profilers.append(subprocess.Popen(
                        ["py-spy", "record", "--pid", str(process.pid), "--rate", "100",
                         "--duration", str(int(args.duration)), "--format", "raw", "--threads",
                         "--idle", "--output", str(out)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    row.notes.append(f"py-spy profile: {out}")
            split = "" if not several else (
                f" split over {len(run_jobs)} wrk instances ("
                + " + ".join(f"{j.connections}c/{j.threads}t" for j in run_jobs) + ")")
            say(f"load {args.duration:g}s, {args.connections} connections{split}, "
                f"{total} distinct events ready")
            rss_before = [rss_mb(p.pid) for p in processes]
            samplers = [RssSampler(p.pid) for p in processes]
            started = time.time()
            cpu_before = [process_cpu(p.pid) for p in processes]
            fake_before = process_cpu(fake.process.pid)
            machine_before = cpu_times()[0]
            result, each = run_wrks(run_jobs, args.duration)
            cpu_each = [process_cpu(p.pid) - before
                        for p, before in zip(processes, cpu_before, strict=True)]
            server_cpu = sum(cpu_each)
            fake_cpu = process_cpu(fake.process.pid) - fake_before
            others = cpu_times()[0] - machine_before - server_cpu - fake_cpu - result.cpu_s
            rss_load = [sampler.peak() for sampler in samplers]
            say("load done; waiting for replies")
            counts = wait_for_replies(fake, result.acks, timeout=args.reply_timeout,
                                      settle=args.settle, unfinished=unfinished)
            rss_catchup = [sampler.peak() for sampler in samplers]
            for sampler in samplers:
                sampler.stop()
            rss_after = [rss_mb(p.pid) for p in processes]
            for profiler in profilers:
                profiler.wait(60)
            if args.verbose:
                print(result.text, file=log, flush=True)
            row.rss_before_mb = sum(rss_before)
            row.rss_load_mb = sum(rss_load)
            row.rss_catchup_mb = sum(rss_catchup)
            row.rss_after_mb = sum(rss_after)
            row.acks = result.acks
            row.duration_s = result.duration_s
            row.acks_per_s = result.acks / result.duration_s if result.duration_s else 0.0
            row.p50_ms = result.latency_ms["p50"]
            row.p90_ms = result.latency_ms["p90"]
            row.p99_ms = result.latency_ms["p99"]
            row.max_ms = result.latency_ms["max"]
            row.non_2xx = result.errors.get("status", 0)
            row.socket_errors = {k: v for k, v in result.errors.items() if k != "status" and v}
            row.wrapped = result.wrapped
            row.server_cpu = round(server_cpu / result.duration_s, 2)
            row.wrk_cpu = round(result.cpu_s / result.duration_s, 2)
            row.fake_cpu = round(fake_cpu / result.duration_s, 2)
            row.others_cpu = round(max(0.0, others) / result.duration_s, 2)
            if several:
                row.per_process = [
                    {"pid": p.pid, "port": instance.port, "connections": job.connections,
                     "wrk_threads": job.threads, "acks": r.acks,
                     "acks_per_s": round(r.acks / r.duration_s, 1) if r.duration_s else 0.0,
                     "p50_ms": r.latency_ms["p50"], "p90_ms": r.latency_ms["p90"],
                     "p99_ms": r.latency_ms["p99"], "max_ms": r.latency_ms["max"],
                     "cpu": round(cpu / result.duration_s, 2), "rss_before_mb": round(b, 1),
                     "rss_load_mb": round(load, 1), "rss_catchup_mb": round(catchup, 1),
                     "rss_after_mb": round(after, 1)}
                    for p, instance, job, r, cpu, b, load, catchup, after in zip(
                        processes, server.instances, run_jobs, each, cpu_each, rss_before,
                        rss_load, rss_catchup, rss_after, strict=True)]
                row.notes.append(
                    "latency: the worst wrk instance's percentiles (percentiles of separate "
                    "instances cannot be merged exactly); p99 per instance "
                    + ", ".join(f"#{i} {r.latency_ms['p99']:.1f} ms"
                                for i, r in enumerate(each))
                    + "; cpu and RSS are sums over the processes")
            if row.others_cpu > 0.15:
                row.notes.append(f"other processes used {row.others_cpu:.2f} CPUs during the "
                                 "measured run: figures are skewed")
            row.replies = counts["posts"]
            last = counts.get("last_post") or started
            row.last_reply_after_s = max(0.0, last - started)
            row.replies_per_s = row.replies / row.last_reply_after_s if row.replies else 0.0
            # wrk does not count requests still in flight when it stops, which the server may
            # have acknowledged and answered too: replies can exceed acks, never fall short.
            row.every_reply = row.replies >= row.acks and counts["distinct_threads"] >= row.acks
            if result.wrapped:
                row.notes.append(f"INVALID: wrk ran out of distinct events {result.wrapped} "
                                 "times; raise --max-rate")
            if row.non_2xx:
                row.notes.append(f"{row.non_2xx} non-2xx answers")
            if row.socket_errors:
                row.notes.append(f"socket errors {row.socket_errors}")
            if not row.every_reply:
                row.notes.append(f"missing replies: {row.replies} replies "
                                 f"({counts['distinct_threads']} threads) for {row.acks} acks")
            if several and counts["posts"] > counts["distinct_threads"]:
                row.notes.append(f"{counts['posts'] - counts['distinct_threads']} replies went "
                                 "to a thread already answered (answered twice?)")
            if server.database is not None:
                row.db = sqlite_crosscheck(server.database, "M")
            elif server.database_url:
                row.db = pg_crosscheck(server.database_url, "M")
            if row.db and row.db["measured_delivered"] != row.db["measured_turns"]:
                row.every_reply = False
                row.notes.append(f"{row.db['measured_turns'] - row.db['measured_delivered']}"
                                 " recorded turns of the measured run were not delivered")
        finally:
            for profiler in profilers:
                if profiler.poll() is None:
                    profiler.terminate()
            stop_all(processes)
    row.stderr = scan_stderrs(paths)
    return row


# --- report --------------------------------------------------------------------------------------


def table(rows: list[Row]) -> str:
    width = max([12, *(len(r.name) for r in rows)])
    head = (f"{'':<{width}} {'acks/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
            f"{'replies/s':>10} {'acks':>7} {'replies':>8} {'non2xx':>7} {'cpu':>5} {'wrk':>5}"
            f" {'RSS MB: before':>14} {'load':>5} {'catch-up':>8} {'after':>5}  every reply")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.name:<{width}} {r.acks_per_s:>9.0f} {r.p50_ms:>8.1f} {r.p99_ms:>8.1f} "
                     f"{r.max_ms:>8.1f} {r.replies_per_s:>10.0f} {r.acks:>7} {r.replies:>8} "
                     f"{r.non_2xx:>7} {r.server_cpu:>5.2f} {r.wrk_cpu:>5.2f} "
                     f"{r.rss_before_mb:>14.0f} {r.rss_load_mb:>5.0f} {r.rss_catchup_mb:>8.0f} "
                     f"{r.rss_after_mb:>5.0f}  "
                     f"{'yes' if r.every_reply else 'NO'}")
    return "\n".join(lines)


def verdict(rows: list[Row]) -> dict[str, Any]:
    by = {r.name: r for r in rows}
    sb = next((r for r in rows if r.name.startswith("switchboard")), None)
    bare = by.get("bare bolt")
    out: dict[str, Any] = {}
    if sb and bare and bare.acks_per_s:
        out["ratio_acks"] = round(sb.acks_per_s / bare.acks_per_s, 3)
        out["acks_at_least_bare"] = sb.acks_per_s >= bare.acks_per_s
    if sb:
        out["switchboard_p99_under_50ms"] = sb.p99_ms < P99_TARGET_MS
        out["switchboard_every_reply"] = sb.every_reply
    out["valid"] = all(not r.wrapped for r in rows)
    out["met"] = bool(out.get("acks_at_least_bare") and out.get("switchboard_p99_under_50ms")
                      and out.get("switchboard_every_reply") and out["valid"])
    return out


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Switchboard vs bare slack-bolt: signed app_mention events under wrk load.")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per row")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per row")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--max-rate", type=float, default=6000.0,
                        help="distinct events generated per second of load (an upper bound on "
                        "the rate; a run that exhausts them is flagged invalid)")
    parser.add_argument("--channels", type=int, default=16, help="distinct channels mentioned in")
    parser.add_argument("--session-scope", default="thread",
                        choices=["thread", "conversation", "sender"],
                        help="Switchboard binding's session_scope (the example config: thread)")
    parser.add_argument("--switchboard-src", metavar="DIR",
                        help="run Switchboard from this src/ directory (e.g. a `git archive "
                        "HEAD src` snapshot) instead of the installed one")
    parser.add_argument("--rows", default="switchboard,bare",
                        help="which rows, in order: switchboard, bare")
    parser.add_argument("--reply-timeout", type=float, default=120.0,
                        help="longest wait for replies after the load stops")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="stop waiting when the reply count has not grown for this long")
    parser.add_argument("--wait-quiet", type=float, default=30.0,
                        help="before each row, wait up to this long for other work on the "
                        "machine to stop (CPU under 10%%)")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between rows")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy record each server during the measured run (collapsed stacks "
                        "with threads and idle frames, kept in the work directory; skews it)")
    parser.add_argument("--database-url", metavar="URL",
                        help="a fresh, migrated PostgreSQL database for the switchboard row "
                             "instead of a new SQLite file (cross-checked through psycopg)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="Switchboard processes on the one PostgreSQL database (needs "
                        "--database-url), each on its own ports; N wrk instances at once split "
                        "the connections and threads between them (the bare row stays one)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.processes > 1 and not args.database_url:
        parser.error("--processes N > 1 needs --database-url (a PostgreSQL database): a "
                     "SQLite database belongs to one Switchboard process")
    if args.processes > args.connections:
        parser.error("--processes cannot exceed --connections (each wrk instance needs one)")

    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk  (Debian/Ubuntu package 'wrk')",
              file=sys.stderr)
        return 2
    if args.profile and shutil.which("py-spy") is None:
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    # killed (SIGTERM), stop the servers, wrk and the fake on the way out as on Ctrl-C
    signal.signal(signal.SIGTERM, _terminated)
    log = sys.stderr
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    print(f"work directory {workdir}; {os.cpu_count()} CPUs", file=log, flush=True)
    fake = FakeSlack(workdir)
    events = Events(args.channels)
    rows: list[Row] = []
    try:
        for name in [n.strip() for n in args.rows.split(",") if n.strip()]:
            if name == "switchboard":
                server = switchboard_server(workdir, fake.api_url, args.session_scope,
                                            args.switchboard_src, args.database_url,
                                            args.processes)
            elif name in {"bare", "bolt", "bare bolt"}:
                server = bare_server(fake.api_url)
            else:
                parser.error(f"unknown row {name!r}")
            if rows:
                time.sleep(args.pause)
            fake.reset()
            try:
                rows.append(run_row(server, fake, events, workdir, args, log))
            except (RuntimeError, OSError, ValueError) as error:
                paths = stderr_paths(server, workdir)
                tail = [line for path in paths if path.exists()
                        for line in [f"--- {path.name}",
                                     *path.read_text(errors="replace").splitlines()[-15:]]]
                if len(paths) == 1:  # as it always was
                    tail = tail[1:]
                print(f"[{server.name}] FAILED: {error}", *tail, sep="\n", file=log)
                found: dict[str, Any] = {}
                if len(paths) > 1:
                    found = scan_stderrs(paths)
                elif paths[0].exists():
                    found = scan_stderr(paths[0])
                rows.append(Row(server.name, processes=len(server.instances),
                                notes=[f"FAILED: {error}"], stderr=found))
    finally:
        fake.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result = verdict(rows)
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], **result,
                          "settings": {k: v for k, v in vars(args).items() if k != "json"},
                          "cpus": os.cpu_count()}, indent=2))
        return 0
    print(table(rows))
    if "ratio_acks" in result:
        print(f"\nratio switchboard/bare acks/s: {result['ratio_acks']:.2f} "
              f"({'meets' if result['acks_at_least_bare'] else 'misses'} >= 1.0)")
    if "switchboard_p99_under_50ms" in result:
        print(f"switchboard ack p99 < {P99_TARGET_MS:g} ms: "
              f"{'yes' if result['switchboard_p99_under_50ms'] else 'NO'}; every reply "
              f"delivered: {'yes' if result['switchboard_every_reply'] else 'NO'}")
    for r in rows:
        for i, each in enumerate(r.per_process):
            print(f"{r.name} process #{i} (pid {each['pid']}, port {each['port']}, wrk "
                  f"{each['connections']}c/{each['wrk_threads']}t): {each['acks']} acks "
                  f"({each['acks_per_s']:.0f}/s), p50 {each['p50_ms']:.1f} ms, p99 "
                  f"{each['p99_ms']:.1f} ms, cpu {each['cpu']:.2f}, RSS MB before "
                  f"{each['rss_before_mb']:.0f} load {each['rss_load_mb']:.0f} catch-up "
                  f"{each['rss_catchup_mb']:.0f} after {each['rss_after_mb']:.0f}")
        if r.db:
            print(f"\n{r.name} database: turns by status {r.db['turns_by_status']}; measured "
                  f"run {r.db['measured_delivered']}/{r.db['measured_turns']} delivered; "
                  f"received->delivered lag p50 {r.db['reply_lag_ms']['p50']} ms, "
                  f"p99 {r.db['reply_lag_ms']['p99']} ms")
        if r.stderr.get("counts"):
            print(f"{r.name} stderr: {r.stderr['counts']}")
            for sample in r.stderr["samples"]:
                print(f"    {sample}")
        for note in r.notes:
            print(f"{r.name}: {note}")
    print(f"\ntargets met: {'yes' if result['met'] else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
