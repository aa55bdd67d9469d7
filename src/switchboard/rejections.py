"""Requests refused before they became turns, counted in memory.

A flood of forged webhooks must cost a dictionary update per request, not a database write and
a log line each (which held one process to a few hundred rejections a second and filled the
log). The store adds these counts to the database every second or so
(`AccountStore.flush_rejected`, an additive upsert, so processes sharing a database add up),
and the runtime logs one summary line per interval. `bench/rejections.py` measures it.
"""

from __future__ import annotations

from collections import Counter

Key = tuple[str, str]  # (account, reason)


class RejectionCounter:
    """Counts by (account, reason): what is not yet in the database, and what was refused since
    the last summary line."""

    def __init__(self) -> None:
        self._counts: dict[Key, int] = {}
        self._flushing: dict[Key, int] = {}
        self._since_summary: Counter[Key] = Counter()

    def note(self, account: str, reason: str) -> None:
        key = (account, reason)
        self._counts[key] = self._counts.get(key, 0) + 1

    def take(self) -> dict[Key, int]:
        """The counts to write now; they stay in `pending()` until `written` or `restore`."""
        batch, self._counts = self._counts, {}
        for key, count in batch.items():
            self._flushing[key] = self._flushing.get(key, 0) + count
        return batch

    def written(self, batch: dict[Key, int]) -> None:
        self._forget(batch)
        self._since_summary.update(batch)

    def restore(self, batch: dict[Key, int]) -> None:
        """A write that failed: these counts go out with the next one."""
        self._forget(batch)
        for key, count in batch.items():
            self._counts[key] = self._counts.get(key, 0) + count

    def _forget(self, batch: dict[Key, int]) -> None:
        for key, count in batch.items():
            left = self._flushing.get(key, 0) - count
            if left > 0:
                self._flushing[key] = left
            else:
                self._flushing.pop(key, None)

    def pending(self) -> dict[Key, int]:
        """Counted here but not (yet) in the database."""
        out = dict(self._flushing)
        for key, count in self._counts.items():
            out[key] = out.get(key, 0) + count
        return out

    def summary(self, seconds: float, most: int = 8) -> str | None:
        """One line on what was written since the last call (None when nothing was), e.g.
        `rejected 5123 requests in the last 10 s: acme bad_signature 5120, bot bad_secret
        3`; then starts over."""
        counts, self._since_summary = self._since_summary, Counter()
        if not counts:
            return None
        total = sum(counts.values())
        top = counts.most_common(most)
        parts = [f"{account} {reason} {count}" for (account, reason), count in top]
        if len(counts) > most:
            parts.append(f"and {len(counts) - most} more")
        return (f"rejected {total} request{'s' if total != 1 else ''} in the last "
                f"{seconds:g} s: {', '.join(parts)}")
