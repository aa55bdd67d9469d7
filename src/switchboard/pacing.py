"""Pacing: outbound messages go through token buckets that follow the provider's published
limits (per conversation, per group conversation, per account), so replies never trip a
flood limit. A final message waits for its turn (`wait`); a live update that has no token now
is skipped and coalesced into the next (`try_take`). `hold` honours a provider's
`retry_after`: nothing goes to that conversation before it is over.

Buckets live in this process (several processes on one account each pace their own share).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from channels.live import Pace, Rate

MANY = 10_000  # buckets kept before idle (full) ones are forgotten


@dataclass
class Bucket:
    """A token bucket; `reserve` may take a token from the future (negative balance), so
    waiters queue in order instead of racing."""

    rate: Rate
    tokens: float
    at: float
    held_until: float = 0.0

    def refill(self, now: float) -> None:
        self.tokens = min(self.rate.burst, self.tokens + (now - self.at) * self.rate.per_second)
        self.at = now

    def delay(self, now: float) -> float:
        """Seconds until a token is free (0: now)."""
        self.refill(now)
        wait = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate.per_second
        return max(wait, self.held_until - now)

    def take(self) -> None:
        self.tokens -= 1


@dataclass(frozen=True)
class Waited:
    """How long a message waited, and for which limit (in a person's words)."""

    seconds: float
    why: str = ""
    postponed: bool = False


class Pacer:
    """Token buckets of every account and conversation this process sends to."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, ...], Bucket] = {}
        self._holds: dict[tuple[str, str], float] = {}

    def _bucket(self, key: tuple[str, ...], rate: Rate, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate:
            if len(self._buckets) > MANY:
                self._forget_idle(now)
            bucket = self._buckets[key] = Bucket(rate, rate.burst, now)
        return bucket

    def _forget_idle(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.rate.burst and bucket.held_until <= now:
                del self._buckets[key]

    def _limits(self, account: str, conversation: str, group: bool, pace: Pace,
                now: float) -> list[tuple[Bucket, str]]:
        out: list[tuple[Bucket, str]] = []
        if pace.conversation is not None:
            out.append((self._bucket(("c", account, conversation), pace.conversation, now),
                        f"{pace.label} {pace.conversation_word} limit"))
        if group and pace.group is not None:
            out.append((self._bucket(("g", account, conversation), pace.group, now),
                        f"{pace.label} per-group limit"))
        if pace.account is not None:
            out.append((self._bucket(("a", account), pace.account, now),
                        f"{pace.label} per-account limit"))
        return out

    def _held(self, account: str, conversation: str, now: float) -> float:
        until = self._holds.get((account, conversation), 0.0)
        if until and until <= now:
            del self._holds[(account, conversation)]
            return 0.0
        return max(0.0, until - now)

    async def wait(self, account: str, conversation: str, group: bool, pace: Pace,
                   longest: float = float("inf")) -> Waited:
        """Wait until a message may go (its tokens are taken at once, so waiters keep their
        order); how long, and which limit held it longest. A wait longer than `longest` is
        not waited here: `Waited.postponed` says to try again that much later."""
        now = self.clock()
        limits = self._limits(account, conversation, group, pace, now)
        delay, why = self._held(account, conversation, now), f"{pace.label} retry_after"
        for bucket, label in limits:
            wait = bucket.delay(now)
            if wait > delay:
                delay, why = wait, label
        if delay > longest:
            return Waited(delay, why, postponed=True)
        for bucket, _ in limits:
            bucket.take()
        if delay <= 0:
            return Waited(0.0)
        await asyncio.sleep(delay)
        return Waited(delay, why)

    def try_take(self, account: str, conversation: str, group: bool, pace: Pace) -> bool:
        """Take a token now if every limit has one (a live update); False: skip this one."""
        now = self.clock()
        if self._held(account, conversation, now) > 0:
            return False
        limits = self._limits(account, conversation, group, pace, now)
        if any(bucket.delay(now) > 0 for bucket, _ in limits):
            return False
        for bucket, _ in limits:
            bucket.take()
        return True

    def sent(self, account: str, conversation: str, group: bool, pace: Pace) -> None:
        """A call to the conversation finished: its next token is counted from now, not from
        when this one was taken, so calls that waited in a busy process or a connection pool
        still reach the provider spaced out."""
        now = self.clock()
        for bucket, _ in self._limits(account, conversation, group, pace, now):
            if bucket is not self._buckets.get(("a", account)):
                bucket.refill(now)
                bucket.tokens = min(bucket.tokens, bucket.rate.burst - 1)

    def hold(self, account: str, conversation: str, seconds: float) -> None:
        """The provider said `retry_after`: nothing more to this conversation until then."""
        until = self.clock() + max(0.0, seconds)
        key = (account, conversation)
        self._holds[key] = max(self._holds.get(key, 0.0), until)


def words(waited: Waited) -> str:
    """"waiting 3.2 s for <the provider>'s per-chat limit", for the turn's timeline."""
    return f"waiting {waited.seconds:.1f} s for {waited.why}"


__all__ = ["Pacer", "Waited", "words"]
