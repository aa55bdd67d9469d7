"""`/healthz`: whether this process can do its work, from what it knows now: each enabled
account (did it start, is its listener up, what did its provider last refuse) and the
database (one query, within a second)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from switchboard.config import Config
from switchboard.store import Store


async def health(config: Config, account_errors: Mapping[str, str], store: Store,
                 timeout: float = 1.0, queue: Mapping[str, int] | None = None
                 ) -> tuple[int, dict[str, Any]]:
    """(status code, body): 200 `ok`; 200 `degraded` with the reasons when something works;
    503 when nothing does (the database is unreachable, or every enabled account is down).
    `queue`: this process's recorded turns waiting, in memory and in the database."""
    extra = {"queue": dict(queue)} if queue is not None else {}
    accounts: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for name in config.accounts:
        if name in config.disabled:
            accounts[name] = "disabled"
        elif name in account_errors:
            accounts[name] = "failing"
            reasons[name] = account_errors[name]
        else:
            accounts[name] = "enabled"
    database = await _database(store, timeout)
    if database is not None:
        reasons["database"] = database
    if not reasons:
        return 200, {"status": "ok", "accounts": accounts, **extra}
    working = [name for name, state in accounts.items() if state == "enabled"]
    down = database is not None or (not working and any(
        state == "failing" for state in accounts.values()))
    return (503 if down else 200), {"status": "down" if down else "degraded",
                                    "accounts": accounts, "reasons": reasons, **extra}


async def _database(store: Store, timeout: float) -> str | None:
    """Why the database cannot be used now, or None."""
    try:
        await asyncio.wait_for(store.outbox.depth(), timeout)
    except TimeoutError:
        return f"the database did not answer within {timeout:g} s"
    except Exception as error:  # any driver's error: the reason is what operators need
        return f"the database cannot be used: {type(error).__name__}: {error}"
    return None


__all__ = ["health"]
