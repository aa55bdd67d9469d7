"""The work phase alone: how fast acknowledged turns are answered once the flood stops.

A short flood (`--flood` seconds of distinct signed mentions through wrk, as in slack_ack.py)
leaves a backlog of acknowledged turns; then nothing arrives, and the server's only job is to
route, answer, record and deliver them. Prints the backlog, the drain rate (replies per second
from the end of the flood to the last reply), the server's CPU while draining and the CPU time
per answered turn; `--profile FILE` records the drain with py-spy (raw folded stacks, GIL
holder only: what each thread spends of the one interpreter).

    PATH=/tmp/venv/bin:$PATH python bench/work_phase.py [--switchboard-src DIR] [--json]
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slack_ack as bench  # the same fake Slack, server and load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=float, default=3.0, help="seconds of load")
    parser.add_argument("--switchboard-src", metavar="DIR")
    parser.add_argument("--database-url", metavar="URL",
                        help="a fresh, migrated PostgreSQL database instead of SQLite")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record of the drain")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.profile and shutil.which("py-spy") is None:
        print("--profile needs py-spy: pip install py-spy", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="switchboard-work-phase-"))
    fake = bench.FakeSlack(work)
    server = bench.switchboard_server(work, fake.api_url, "thread", args.switchboard_src,
                                      args.database_url)
    events = bench.Events(16)
    with (work / "server.stderr").open("wb") as stderr:
        process = subprocess.Popen(server.command, env=server.env, stdout=stderr,
                                   stderr=stderr, cwd=work)
        try:
            bench.wait_healthy(server.health_url, process)
            events.write(work / "flood", int(args.flood * 6000), 2, "F")
            load = bench.run_wrk(server.events_url, work / "flood", threads=2, connections=32,
                                 duration=args.flood)
            flood_end = time.time()
            answered_before = bench.http_json("GET", f"{fake.base}/count")[1]["posts"]
            profiler = None
            if args.profile:
                profiler = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(process.pid), "--rate", "100",
                     "--duration", "8", "--format", "raw", "--threads", "--gil",
                     "--output", args.profile],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cpu_before = bench.process_cpu(process.pid)
            counts = bench.wait_for_replies(fake, load.acks, timeout=600, settle=5,
                                            database=server.database)
            cpu = bench.process_cpu(process.pid) - cpu_before
            if profiler is not None:
                profiler.wait(60)
        finally:
            bench.stop(process)
            fake.close()
    last = counts.get("last_post") or flood_end
    drained = counts["posts"] - answered_before
    seconds = max(last - flood_end, 1e-9)
    result = {
        "acks": load.acks, "acks_per_s": round(load.acks / args.flood),
        "answered_during_flood": answered_before, "backlog": load.acks - answered_before,
        "drain_s": round(seconds, 1), "drain_replies_per_s": round(drained / seconds),
        "server_cpu_while_draining": round(cpu / seconds, 2),
        "cpu_ms_per_turn": round(cpu / max(drained, 1) * 1000, 2),
        "every_reply": counts["posts"] >= load.acks, "work_dir": str(work),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:28} {value}")
    if not os.environ.get("KEEP_WORK_PHASE"):
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
