"""Rejections under a flood: how many forged Slack requests one `serve` process refuses per
second, and what the flood does to the acknowledgement latency of valid events.

One run, one server (fresh SQLite database, one echo agent, one Slack account), three phases:

1. *valid alone*: a steady trickle of distinct, correctly signed `app_mention` events
   (bench/mention.lua with a pause per connection), ack latency p50/p99;
2. *flood alone*: wrk over many connections posting forged events (bench/mention.lua again, on
   events with a fresh timestamp and a wrong signature: every answer is 401 `bad_signature`),
   rejections/s;
3. *flood + valid*: both at once, two wrk processes: rejections/s and the valid events' p99.

Afterwards the rejection count `/api/accounts` shows is compared with the forged requests wrk
saw answered, and the server's log is measured (lines and bytes written during the run).

    /tmp/venv/bin/python bench/rejections.py --duration 10 [--src /other/checkout/src] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slack_ack import (
    ACCOUNT,
    LUA,
    REPO,
    Events,
    FakeSlack,
    WrkResult,
    http_json,
    machine_busy,
    parse_wrk,
    process_cpu,
    stop,
    switchboard_server,
    wait_healthy,
    wrk_command,
)

TOKEN = "bench-token"  # the admin token switchboard_server() configures


@dataclass
class Phase:
    name: str
    duration_s: float = 0.0
    rejections_per_s: float | None = None
    flood_requests: int = 0
    flood_other_answers: int = 0  # forged requests not answered 4xx (socket errors included)
    valid_acks: int = 0
    valid_non_2xx: int = 0
    valid_p50_ms: float | None = None
    valid_p99_ms: float | None = None
    valid_max_ms: float | None = None
    server_cpu: float = 0.0  # cores the server used
    log_lines: int = 0
    log_bytes: int = 0


@dataclass
class Report:
    src: str
    phases: list[Phase] = field(default_factory=list)
    forged_answered: int = 0  # as wrk counted them
    rejected_shown: int | None = None  # bad_signature in /api/accounts after the run
    machine_busy_before: float | None = None
    notes: list[str] = field(default_factory=list)


def write_forged(prefix: Path, count: int = 2000) -> None:
    """Lines for mention.lua (PREFIX.0): fresh timestamps, signatures that are not the
    account's. Repeats do not matter: they are refused before anything would notice."""
    stamp, signature = str(int(time.time())), "v0=" + "0" * 64
    with prefix.with_name(f"{prefix.name}.0").open("w") as out:
        for i in range(count):
            body = json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "ABENCH",
                               "type": "event_callback", "event_id": f"EvFORGED{i:06d}",
                               "event_time": int(stamp), "event": {
                                   "type": "app_mention", "user": "U0MALLORY",
                                   "text": "<@UBOT> forged", "ts": f"1.{i:06d}",
                                   "channel": "CBENCH000"}}, separators=(",", ":"))
            out.write(f"{stamp}\t{signature}\t{body}\n")


def start_wrk(url: str, script: Path, script_args: list[str], *, connections: int,
              duration: float) -> subprocess.Popen[str]:
    command = wrk_command(url, script, script_args, threads=1, connections=connections,
                          duration=duration)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_wrk(process: subprocess.Popen[str]) -> WrkResult:
    out, err = process.communicate(timeout=120)
    return parse_wrk(out, err, process.returncode)


def log_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return data.count(b"\n"), len(data)


def run_phase(name: str, url: str, *, valid: Path | None, flood: Path | None, pid: int,
              stderr: Path, args: argparse.Namespace) -> Phase:
    phase = Phase(name, duration_s=args.duration)
    lines, size = log_size(stderr)
    cpu = process_cpu(pid)
    floods = start_wrk(url, LUA, [str(flood)], connections=args.flood_connections,
                       duration=args.duration) if flood else None
    trickle = start_wrk(url, LUA, [str(valid), str(args.pause_ms)],
                        connections=args.valid_connections,
                        duration=args.duration) if valid else None
    if floods is not None:
        result = finish_wrk(floods)
        phase.flood_requests = result.requests
        refused = result.errors.get("status", 0)
        phase.flood_other_answers = result.requests - refused + sum(
            v for k, v in result.errors.items() if k != "status")
        phase.rejections_per_s = round(refused / result.duration_s, 1)
    if trickle is not None:
        result = finish_wrk(trickle)
        phase.valid_acks = result.acks
        phase.valid_non_2xx = result.errors.get("status", 0)
        phase.valid_p50_ms = result.latency_ms["p50"]
        phase.valid_p99_ms = result.latency_ms["p99"]
        phase.valid_max_ms = result.latency_ms["max"]
        if result.wrapped:
            raise RuntimeError("the valid events ran out and repeated; lower --pause-ms")
    phase.server_cpu = round((process_cpu(pid) - cpu) / args.duration, 2)
    after_lines, after_size = log_size(stderr)
    phase.log_lines, phase.log_bytes = after_lines - lines, after_size - size
    return phase


def rejected_shown(health_url: str) -> int | None:
    status, body = http_json("GET", health_url.replace("/healthz", "/api/accounts"),
                             headers={"Authorization": f"Bearer {TOKEN}"})
    if status != 200:
        return None
    for account in body.get("accounts", []):
        if account.get("name") == ACCOUNT:
            return int(account.get("rejected", {}).get("bad_signature", 0))
    return None


def run(args: argparse.Namespace, workdir: Path, log: Any) -> Report:
    src = str(Path(args.src).resolve())
    report = Report(src)
    report.machine_busy_before = machine_busy()
    if report.machine_busy_before is not None and report.machine_busy_before > 0.1:
        report.notes.append(f"the machine was {report.machine_busy_before:.0%} busy with other "
                            "work before the run: figures are skewed")
    fake = FakeSlack(workdir)
    server = switchboard_server(workdir, fake.api_url, "thread", src)
    events = Events(16)
    per_phase = int(args.valid_connections * args.duration * 1000 / args.pause_ms * 1.5) + 100
    stderr = workdir / "switchboard.stderr"
    try:
        with stderr.open("wb") as out:
            process = subprocess.Popen(server.command, env=server.env, stdout=out, stderr=out,
                                       cwd=workdir)
            try:
                wait_healthy(server.health_url, process)
                print(f"serve up (pid {process.pid}, src {src})", file=log, flush=True)
                phases = [("warm-up", False, True), ("valid alone", False, True),
                          ("flood alone", True, False), ("flood + valid", True, True)]
                for i, (name, flood, valid) in enumerate(phases):
                    prefix, forged = workdir / f"valid{i}", workdir / f"forged{i}"
                    if valid:
                        events.write(prefix, per_phase, 1, "V")
                    if flood:
                        write_forged(forged)
                    print(f"phase {name}: {args.duration:g}s", file=log, flush=True)
                    phase = run_phase(name, server.events_url, valid=prefix if valid else None,
                                      flood=forged if flood else None, pid=process.pid,
                                      stderr=stderr, args=args)
                    if name != "warm-up":
                        report.phases.append(phase)
                    report.forged_answered += phase.flood_requests - phase.flood_other_answers
                    time.sleep(args.pause)
                time.sleep(3)  # counters reach the database within a flush interval or two
                report.rejected_shown = rejected_shown(server.health_url)
            finally:
                stop(process)
    finally:
        fake.close()
    if report.rejected_shown is not None and report.rejected_shown < report.forged_answered:
        report.notes.append(f"/api/accounts shows {report.rejected_shown} rejections for "
                            f"{report.forged_answered} forged requests answered")
    return report


def table(report: Report) -> str:
    head = (f"{'phase':<14} {'rejections/s':>12} {'valid acks':>10} {'p50 ms':>7} "
            f"{'p99 ms':>7} {'max ms':>7} {'cpu':>5} {'log lines':>9} {'log KB':>8}")
    lines = [head, "-" * len(head)]

    def num(value: float | None, spec: str) -> str:
        return f"{'-':>{spec.split('.')[0]}}" if value is None else format(value, spec)

    for p in report.phases:
        lines.append(f"{p.name:<14} {num(p.rejections_per_s, '12.0f')} "
                     f"{num(p.valid_acks or None, '10.0f')} {num(p.valid_p50_ms, '7.1f')} "
                     f"{num(p.valid_p99_ms, '7.1f')} {num(p.valid_max_ms, '7.1f')} "
                     f"{p.server_cpu:>5.2f} {p.log_lines:>9} {p.log_bytes / 1024:>8.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--src", default=str(REPO / "src"),
                        help="the src/ directory to run Switchboard from (default: this "
                        "checkout's)")
    parser.add_argument("--flood-connections", type=int, default=16)
    parser.add_argument("--valid-connections", type=int, default=2)
    parser.add_argument("--pause-ms", type=float, default=20.0,
                        help="pause of each valid connection before each request")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between phases")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="switchboard-rejections-"))
    print(f"work directory {workdir}; {os.cpu_count()} CPUs", file=sys.stderr, flush=True)
    try:
        report = run(args, workdir, sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    print(f"switchboard from {report.src}")
    print(table(report))
    print(f"\nforged requests answered {report.forged_answered}; /api/accounts shows "
          f"{report.rejected_shown} bad_signature rejections")
    for note in report.notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
