"""Operator queries at a million turns: fill a database, then time the operator API on it.

    /tmp/venv/bin/python bench/queries.py                                  # SQLite, 1,000,000 turns
    /tmp/venv/bin/python bench/queries.py --reuse                          # the same fill again
    /tmp/venv/bin/python bench/queries.py --url postgresql://postgres@127.0.0.1:5432 --turns 200000
    /tmp/venv/bin/python bench/queries.py --reuse --src /tmp/base/src      # another checkout's code

The fill writes straight through the database driver (SQLite `executemany` with synchronous off,
PostgreSQL `COPY`) in the schema the `--src` checkout migrates to: several providers, accounts,
agents and bindings; sessions of several turns each, interleaved; statuses delivered, failed,
ignored, duplicate (a retried event, beside its original), pending and held; message texts drawn
from a word list with a Zipf-like frequency; Slack-shaped payloads; each turn's timeline. Session
transcripts are not written (no listing reads them). A PostgreSQL URL names the server: the
bench uses (drops and creates) its own database there, `bench_queries` unless `--pg-database`.

Then it starts `switchboard serve` from `--src` on that database (a newer checkout migrates it at
start, and the start time is printed) and asks each query `--requests` times over HTTP with an
operator token, as the console and the CLI do, printing p50/p99 in ms and the rows of the last
answer. Target (issue 19): every p99 <= 50 ms at 1,000,000 turns.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TOKEN = "bench-admin-token-0123456789"
TARGET_MS = 50.0
DAYS = 90

ACCOUNTS = [("slack-acme", "slack", 40), ("slack-beta", "slack", 15), ("tg-main", "telegram", 25),
            ("tg-shop", "telegram", 10), ("mail", "email", 10)]
AGENTS = [("triager", "triage"), ("billing", "billing-desk"), ("sales", "sales-leads"),
          ("helper", "helper-dm")]

WORDS = """
the a to and of i you is it for in my on with this that be have not can please help order
account payment invoice refund card charge billing plan upgrade downgrade cancel subscription
trial price discount coupon receipt tax address shipping delivery package tracking courier late
lost damaged return exchange size colour model warranty repair replace broken screen battery
charger cable login password reset email phone number code verification two factor locked
error crash bug slow timeout page app website mobile android iphone desktop browser update
version install download sync backup restore export import report dashboard chart data file
upload attachment photo video link share team member invite role admin permission access
today tomorrow yesterday monday tuesday wednesday thursday friday weekend morning evening week
month year hour minute asap urgent soon again still already never always sometimes maybe
thanks thank hello hi hey sorry problem issue question request ticket status support agent
human person manager call back contact reply answer wait waiting hours days since ago yet
why how what when where who which does did was were are will would could should
""".split()  # noqa: SIM905 (a word list reads better as text)
RARE = [f"{a}{b}" for a in ("zor", "quil", "bram", "vex", "plon", "trask", "mirr", "dulc")
        for b in ("ak", "ith", "ond", "ux", "elle", "orn", "iq", "ast")]  # 64 words, seldom used


def sqlite_when(value: datetime) -> str:
    """How SQLAlchemy stores a DateTime on SQLite (naive UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


# --- the fill ----------------------------------------------------------------------------------


class Fill:
    """The rows: turns in time order, their timelines, and their sessions."""

    def __init__(self, turns: int, seed: int = 19) -> None:
        self.count = turns
        self.rng = random.Random(seed)
        self.end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
        self.start = self.end - timedelta(days=DAYS)
        self.weights = list(itertools.accumulate(1 / (rank + 1) ** 1.07
                                                 for rank in range(len(WORDS))))
        self.sessions: dict[str, dict[str, Any]] = {}
        self.samples: dict[str, list[str]] = {"turn": [], "event": [], "session": [],
                                              "conversation": [], "user": []}

    def text(self) -> str:
        rng = self.rng
        words = rng.choices(WORDS, cum_weights=self.weights, k=rng.randint(4, 24))
        if rng.random() < 0.05:
            words.insert(rng.randrange(len(words)), rng.choice(RARE))
        if rng.random() < 0.2:
            words.append(f"#{rng.randint(10_000, 99_999)}")
        return " ".join(words).capitalize()

    def turns(self) -> Iterator[tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]]:
        """Each turn's row and its timeline events, oldest first."""
        rng, n = self.rng, self.count
        step = (self.end - self.start) / n
        open_sessions: list[dict[str, Any]] = []
        recent: list[dict[str, Any]] = []  # originals a retry may duplicate
        account_weights = [w for _, _, w in ACCOUNTS]
        for i in range(n):
            at = self.start + step * i + timedelta(microseconds=rng.randrange(1000))
            ms = int(at.timestamp() * 1000)
            turn_id = f"turn_{ms:012x}{rng.getrandbits(32):08x}"
            if recent and rng.random() < 0.02:  # a provider retry of a recent event
                original = rng.choice(recent)
                row = {**original, "id": turn_id, "received_at": at, "status": "duplicate",
                       "duplicate_of": original["id"], "dedupe_key": None, "session_id": None,
                       "binding": None, "agent": None, "reply_text": None,
                       "delivery_status": None, "delivery_attempts": 0, "delivered_at": None,
                       "provider_message_id": None, "agent_ms": None,
                       "route_reason": f"event {original['event_id']} was already received as "
                                       f"{original['id']} (a retry)"}
                yield row, [("duplicate", {"original": original["id"]})]
                continue
            if open_sessions and rng.random() < 0.8:
                session = rng.choice(open_sessions)
            else:
                account, provider, _ = rng.choices(ACCOUNTS, account_weights)[0]
                agent, binding = AGENTS[min(int(rng.paretovariate(1.2)) - 1, len(AGENTS) - 1)]
                conversation = {"slack": f"C{int(rng.paretovariate(0.8)) % 400:08d}",
                                "telegram": str(-100_000 - rng.randint(0, 600)),
                                "email": f"thread-{rng.randint(0, 3000)}"}[provider]
                user = f"U{rng.randint(0, 30_000):07d}"
                session = {"id": f"ses_{ms:012x}{rng.getrandbits(32):08x}", "account": account,
                           "provider": provider, "agent": agent, "binding": binding,
                           "conversation": conversation, "user": user, "started_at": at,
                           "left": max(1, int(rng.expovariate(1 / 5))), "turns": 0}
                self.sessions[session["id"]] = session
                open_sessions.append(session)
                if len(open_sessions) > 300:
                    open_sessions.pop(rng.randrange(len(open_sessions)))
            session["left"] -= 1
            if session["left"] <= 0 and session in open_sessions:
                open_sessions.remove(session)
            provider = session["provider"]
            event_id = {"slack": f"Ev{rng.getrandbits(40):010X}",
                        "telegram": str(500_000_000 + i),
                        "email": f"<{rng.getrandbits(48):012x}@mail.example.com>"}[provider]
            text = self.text()
            roll = rng.random()
            status = ("ignored" if roll < 0.04 else "failed" if roll < 0.06 else
                      "held" if roll < 0.061 else "delivered")
            if i > n - 200 and roll < 0.5:
                status = "pending"
            routed = status != "ignored"
            row = {"id": turn_id, "provider": provider, "account": session["account"],
                   "event_id": event_id, "dedupe_key": f"{session['conversation']}:{ms}.{i}",
                   "conversation": session["conversation"], "kind": "channel", "thread": None,
                   "message_id": f"{ms / 1000:.6f}", "sender": session["user"],
                   "sender_name": f"Person {session['user'][-4:]}", "text": text,
                   "received_at": at, "status": status,
                   "route_reason": "mention" if routed else None,
                   "binding": session["binding"] if routed else None,
                   "agent": session["agent"] if routed else None,
                   "session_id": session["id"] if routed else None,
                   "reply_text": f"Echo: {text[:80]}" if status in ("delivered", "failed")
                   else None,
                   "delivery_status": {"delivered": "delivered", "failed": "failed"}.get(status),
                   "delivery_attempts": {"delivered": 1, "failed": 5}.get(status, 0),
                   "provider_message_id": f"{ms / 1000 + 0.5:.6f}" if status == "delivered"
                   else None,
                   "error": "channel_not_found" if status == "failed" else None,
                   "duplicate_of": None, "owner": None,
                   "agent_ms": rng.randint(40, 4000) if status in ("delivered", "failed")
                   else None,
                   "payload": {"token": "legacy", "team_id": "T0ACME", "api_app_id": "A0BOT",
                               "type": "event_callback", "event_id": event_id,
                               "event_time": int(at.timestamp()),
                               "event": {"type": "app_mention", "user": session["user"],
                                         "text": f"<@U0BOT> {text}", "ts": f"{ms / 1000:.6f}",
                                         "channel": session["conversation"],
                                         "event_ts": f"{ms / 1000:.6f}",
                                         "blocks": [{"type": "rich_text", "block_id": "b1",
                                                     "elements": [{"type": "rich_text_section",
                                                                   "elements": [
                                                                       {"type": "text",
                                                                        "text": text}]}]}]}},
                   "extra": {"mentioned": True, "starts_thread": False, "for_agent": None},
                   "delivered_at": at + timedelta(milliseconds=800) if status == "delivered"
                   else None}
            if not routed:
                row["extra"]["ignore_reason"] = "no binding matches"
            events: list[tuple[str, dict[str, Any]]] = [("received", {"event_id": event_id})]
            if routed:
                session["turns"] += 1
                session["last"] = at
                events += [("routed", {"binding": session["binding"], "agent": session["agent"],
                                       "reason": "mention"}),
                           ("session_created" if session["turns"] == 1 else "session_resumed",
                            {"session_id": session["id"], "scope": session["conversation"]})]
                if status in ("delivered", "failed"):
                    events.append(("agent.replied", {"ms": row["agent_ms"]}))
                    events.append(("delivered", {"attempt": 1}) if status == "delivered" else
                                  ("delivery_failed", {"error": "channel_not_found"}))
            else:
                events.append(("ignored", {"reason": "no binding matches"}))
            if len(self.samples["turn"]) < 400 and rng.random() < 400 / n:
                self.samples["turn"].append(turn_id)
                self.samples["event"].append(event_id)
                if routed:
                    self.samples["session"].append(session["id"])
                self.samples["conversation"].append(session["conversation"])
                self.samples["user"].append(session["user"])
            recent.append(row)
            if len(recent) > 200:
                recent.pop(0)
            yield row, events

    def session_rows(self) -> Iterator[dict[str, Any]]:
        rng, now = self.rng, self.end
        for s in sorted(self.sessions.values(), key=lambda s: s["started_at"]):
            last = s.get("last", s["started_at"])
            idle = now - last
            state = ("ended" if idle > timedelta(days=1) or rng.random() < 0.6
                     else rng.choice(["live", "live", "idle", "paused", "waiting"]))
            yield {"id": s["id"], "agent": s["agent"], "account": s["account"],
                   "provider": s["provider"], "binding": s["binding"],
                   "scope_key": f"{s['provider']}:{s['account']}:{s['conversation']}",
                   "state": state, "source": s["provider"],
                   "tag": "live" if rng.random() < 0.9 else "test", "user_id": s["user"],
                   "user_name": f"Person {s['user'][-4:]}", "started_at": s["started_at"],
                   "last_activity_at": last,
                   "ended_at": last + timedelta(minutes=30) if state == "ended" else None,
                   "end_cause": "idle_timeout" if state == "ended" else None,
                   "parent_session_id": None, "transferred_to": None, "model_override": None,
                   "turn_count": s["turns"], "context": {}}


def _columns_sqlite(connection: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA table_info({table})")]


def fill_sqlite(path: str, fill: Fill, batch: int = 20_000) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")
    turn_cols = _columns_sqlite(connection, "turns")

    def value(v: Any) -> Any:
        if isinstance(v, datetime):
            return sqlite_when(v.astimezone(UTC).replace(tzinfo=None))
        if isinstance(v, dict | list):
            return json.dumps(v)
        return v

    turn_sql = (f"INSERT INTO turns ({', '.join(turn_cols)}) "
                f"VALUES ({', '.join('?' * len(turn_cols))})")
    event_sql = "INSERT INTO turn_events (turn_id, at, name, detail) VALUES (?, ?, ?, ?)"
    turns: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []

    def flush() -> None:
        with connection:
            connection.executemany(turn_sql, turns)
            connection.executemany(event_sql, events)
        turns.clear()
        events.clear()

    for row, timeline in fill.turns():
        turns.append(tuple(value(row.get(c)) for c in turn_cols))
        at = value(row["received_at"])
        events.extend((row["id"], at, name, json.dumps(detail)) for name, detail in timeline)
        if len(turns) >= batch:
            flush()
    flush()
    session_cols = _columns_sqlite(connection, "sessions")
    with connection:
        connection.executemany(
            f"INSERT INTO sessions ({', '.join(session_cols)}) "
            f"VALUES ({', '.join('?' * len(session_cols))})",
            (tuple(value(s.get(c)) for c in session_cols) for s in fill.session_rows()))
    if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'turns_fts_mark'").fetchone():
        with connection:  # what the server's indexer (store/text_index.py) would do at start
            connection.execute("INSERT INTO turns_fts(rowid, text) SELECT rowid, text FROM turns")
            connection.execute("UPDATE turns_fts_mark SET last_rowid = "
                               "(SELECT coalesce(max(rowid), 0) FROM turns)")
    connection.execute("ANALYZE")
    connection.close()


def fill_postgres(url: str, fill: Fill) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(url) as connection:
        columns = [r[0] for r in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'turns' "
            "AND is_generated = 'NEVER' ORDER BY ordinal_position")]
        session_cols = [r[0] for r in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'sessions' "
            "ORDER BY ordinal_position")]
        json_types = {r[0]: r[1] for r in connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name IN ('turns', 'sessions', 'turn_events')")}

        def value(column: str, v: Any) -> Any:
            if isinstance(v, dict | list):
                return Jsonb(v) if json_types.get(column) == "jsonb" else json.dumps(v)
            return v

        with connection.cursor() as cursor:
            events: list[tuple[Any, ...]] = []
            with cursor.copy(f"COPY turns ({', '.join(columns)}) FROM STDIN") as copy:
                for row, timeline in fill.turns():
                    copy.write_row([value(c, row.get(c)) for c in columns])
                    events.extend((row["id"], row["received_at"], name, json.dumps(detail))
                                  for name, detail in timeline)
            with cursor.copy("COPY turn_events (turn_id, at, name, detail) FROM STDIN") as copy:
                for event in events:
                    copy.write_row(event)
            del events
            with cursor.copy(f"COPY sessions ({', '.join(session_cols)}) FROM STDIN") as copy:
                for s in fill.session_rows():
                    copy.write_row([value(c, s.get(c)) for c in session_cols])
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python_with(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def migrate(url: str, src: Path) -> None:
    subprocess.run([sys.executable, "-c", "import sys; from switchboard import db; "
                    "db.upgrade(sys.argv[1])", url], env=python_with(src), check=True)


def serve(url: str, src: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    config = workdir / "bindings.yaml"
    agents = "\n".join(f"  {name}: {{handler: echo, model: small}}" for name, _ in AGENTS)
    config.write_text(f"agents:\n{agents}\noperators:\n"
                      f"  - {{name: bench, role: admin, token: {TOKEN}}}\n")
    port = free_port()
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "switchboard", "serve", "--config", str(config), "--port",
         str(port), "--smtp-port", str(free_port()), "--log-level", "warning"],
        cwd=workdir, env={**python_with(src), "SWITCHBOARD_DATABASE_URL": url},
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 1800  # a newer checkout migrates a big database at start
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"serve did not start: {(workdir / 'serve.log').read_text()}")
        time.sleep(0.2)


# --- the queries -------------------------------------------------------------------------------


def measure(http: httpx.Client, name: str, requests: list[tuple[str, dict[str, Any]]],
            budget: float) -> dict[str, Any]:
    """p50/p99 of the requests (after 3 of warm-up); past `budget` seconds the rest are
    skipped (a query of seconds would take minutes 30 times) and `n` says how many ran."""
    deadline = time.monotonic() + budget
    for path, params in requests[:3]:  # warm-up
        started = time.monotonic()
        http.get(path, params=params)
        if time.monotonic() - started > budget / 10:
            break
    times, rows = [], 0
    for path, params in requests:
        if times and time.monotonic() > deadline:
            break
        started = time.perf_counter()
        response = http.get(path, params=params)
        times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {response.status_code} {response.text[:200]}")
        data = response.json()
        rows = len(data.get("turns", data.get("sessions", data.get("events", []))))
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return {"query": name, "p50": statistics.median(times), "p99": p99, "rows": rows,
            "n": len(times)}


def deep_cursors(http: httpx.Client, path: str, pages: int) -> list[str]:
    """The cursors of pages `pages - 5` to `pages` of a listing."""
    cursor, cursors = None, []
    for page in range(pages):
        response = http.get(path, params={"cursor": cursor} if cursor else {}).json()
        cursor = response["next_cursor"]
        if cursor is None:
            break
        if page >= pages - 6:
            cursors.append(cursor)
    return cursors


def queries(http: httpx.Client, samples: dict[str, list[str]], n: int,
            budget: float) -> list[dict[str, Any]]:
    rng = random.Random(7)

    def pick(kind: str) -> str:
        return rng.choice(samples[kind])

    def turns(**params: Any) -> tuple[str, dict[str, Any]]:
        return "/api/turns", params

    def sessions(**params: Any) -> tuple[str, dict[str, Any]]:
        return "/api/sessions", params

    deep = deep_cursors(http, "/api/turns", 50)
    deep_sessions = deep_cursors(http, "/api/sessions?include_archived=true", 50)
    mid = WORDS[40:120]
    week_ago = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    plan: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
        ("turns: newest page", [turns()] * n),
        *((f"turns: status={s}", [turns(status=s)] * n)
          for s in ("delivered", "failed", "ignored", "pending", "held", "duplicate")),
        *((f"turns: provider={p}", [turns(provider=p)] * n)
          for p in ("slack", "telegram", "email")),
        *((f"turns: account={a}", [turns(account=a)] * n) for a in ("slack-acme", "mail")),
        *((f"turns: agent={a}", [turns(agent=a)] * n) for a in ("triager", "helper")),
        ("turns: binding=billing-desk", [turns(binding="billing-desk")] * n),
        ("turns: session_id=<30 sessions>",
         [turns(session_id=pick("session")) for _ in range(n)]),
        ("turns: conversation=<30 convs>",
         [turns(conversation=pick("conversation")) for _ in range(n)]),
        ("turns: q=<turn id>", [turns(q=pick("turn")) for _ in range(n)]),
        ("turns: q=<event id>", [turns(q=pick("event")) for _ in range(n)]),
        ("turns: q=<session id>", [turns(q=pick("session")) for _ in range(n)]),
        ("turns: q=<a common word>", [turns(q=rng.choice(WORDS[:20])) for _ in range(n)]),
        ("turns: q=<a middling word>", [turns(q=rng.choice(mid)) for _ in range(n)]),
        ("turns: q=<a rare word>", [turns(q=rng.choice(RARE)) for _ in range(n)]),
        ("turns: q=<two words>",
         [turns(q=f"{rng.choice(mid)} {rng.choice(mid)}") for _ in range(n)]),
        ("turns: q=<absent word>", [turns(q=f"nosuchword{i}") for i in range(n)]),
        ("turns: q=<word>&status=failed",
         [turns(q=rng.choice(mid), status="failed") for _ in range(n)]),
        ("turns: cursor 50 pages deep", [turns(cursor=rng.choice(deep)) for _ in range(n)]),
        ("turn: one, with timeline", [(f"/api/turns/{pick('turn')}", {}) for _ in range(n)]),
        ("sessions: newest page", [sessions()] * n),
        *((f"sessions: state={s}", [sessions(state=s)] * n) for s in ("live", "ended")),
        ("sessions: agent=billing", [sessions(agent="billing")] * n),
        ("sessions: user=<30 users>", [sessions(user=pick("user")) for _ in range(n)]),
        ("sessions: source=email", [sessions(source="email")] * n),
        ("sessions: tag=test", [sessions(tag="test")] * n),
        ("sessions: account=tg-shop", [sessions(account="tg-shop")] * n),
        ("sessions: started_after=<a week ago>", [sessions(started_after=week_ago)] * n),
        ("sessions: include_archived", [sessions(include_archived="true")] * n),
        ("sessions: cursor 50 pages deep",
         [sessions(cursor=rng.choice(deep_sessions), include_archived="true")
          for _ in range(n)] if deep_sessions else []),
    ]
    results = []
    for name, requests in plan:
        if requests:
            results.append(measure(http, name, requests, budget))
            print(f"  {name:40} p50 {results[-1]['p50']:7.1f}  p99 {results[-1]['p99']:7.1f}",
                  file=sys.stderr, flush=True)
    return results


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="postgresql://… (the server; default: a SQLite file)")
    parser.add_argument("--pg-database", default="bench_queries")
    parser.add_argument("--turns", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--budget", type=float, default=30.0,
                        help="seconds per query at most (fewer requests past it)")
    parser.add_argument("--reuse", action="store_true", help="query the last fill again")
    parser.add_argument("--fill-only", action="store_true")
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the checkout whose code migrates (on a fill) and serves")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "switchboard-bench-queries")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.src.resolve()
    if args.url:
        server = args.url.rsplit("/", 1)[0] if args.url.count("/") > 2 else args.url
        url = f"{server}/{args.pg_database}"
    else:
        url = f"sqlite:///{args.workdir / 'queries.db'}"
    manifest = args.workdir / f"fill-{'pg' if args.url else 'sqlite'}.json"
    if not args.reuse:
        if args.url:
            import psycopg

            with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{args.pg_database}" WITH (FORCE)')
                connection.execute(f'CREATE DATABASE "{args.pg_database}"')
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{args.workdir / 'queries.db'}{suffix}").unlink(missing_ok=True)
        migrate(url, src)
        fill = Fill(args.turns)
        started = time.perf_counter()
        if args.url:
            fill_postgres(url.replace("postgresql+psycopg", "postgresql"), fill)
        else:
            fill_sqlite(str(args.workdir / "queries.db"), fill)
        took = time.perf_counter() - started
        print(f"filled {args.turns:,} turns, {len(fill.sessions):,} sessions in {took:.1f} s "
              f"({args.turns / took:,.0f} turns/s) into {url}", flush=True)
        manifest.write_text(json.dumps({"turns": args.turns, "url": url,
                                        "samples": fill.samples}))
        if args.fill_only:
            return
    saved = json.loads(manifest.read_text())
    started = time.perf_counter()
    process, base = serve(url, src, args.workdir)
    print(f"serve ({src}) answered after {time.perf_counter() - started:.1f} s", flush=True)
    try:
        with httpx.Client(base_url=base, timeout=120,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            results = queries(http, saved["samples"], args.requests, args.budget)
    finally:
        process.terminate()
        process.wait(30)
    if args.json:
        print(json.dumps({"turns": saved["turns"], "url": url, "results": results}, indent=2))
        return
    kind = "PostgreSQL" if args.url else "SQLite"
    print(f"\n{kind}, {saved['turns']:,} turns, {args.requests} requests each (ms)\n")
    print("| query | p50 | p99 | rows | requests |\n|---|---:|---:|---:|---:|")
    for r in results:
        flag = "" if r["p99"] <= TARGET_MS else " **over**"
        print(f"| {r['query']} | {r['p50']:.1f} | {r['p99']:.1f}{flag} | {r['rows']} | "
              f"{r['n']} |")


if __name__ == "__main__":
    main()
