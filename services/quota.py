"""What one account may cost, across all its sessions on this node: messages per second,
content bytes per second. Per-connection limits alone let an account multiply its budget
by opening more terminals."""
from __future__ import annotations

import time
from typing import Callable

from ..core_ext.errors import RateLimited

__all__ = ["Bucket", "UserBuckets", "SendQuota"]


class Bucket:
    """A token bucket: ``rate`` tokens a second up to ``burst``."""

    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def take(self, amount: float, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


class UserBuckets:
    """One token bucket per account: ``charge(user)`` takes a token or raises RATE_LIMITED
    saying ``what`` is over; ``forget(user)`` once the account has no session here."""

    def __init__(self, rate: float, burst: float, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst, self._what, self._clock = rate, burst, what, clock
        self._buckets: dict[int, Bucket] = {}

    def charge(self, user: int) -> None:
        now = self._clock()
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = Bucket(self._rate, self._burst, now)
        if not bucket.take(1.0, now):
            raise RateLimited(f"over {self._what}")

    def forget(self, user: int) -> None:
        self._buckets.pop(user, None)


class SendQuota:
    """Charges each SEND to its account: RATE_LIMITED, with nothing stored, when the account
    is over its messages or bytes per second."""

    def __init__(self, messages_per_s: float, message_burst: int, bytes_per_s: float, byte_burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._messages = (messages_per_s, float(message_burst))
        self._bytes = (bytes_per_s, float(byte_burst))
        self._clock = clock
        self._buckets: dict[int, tuple[Bucket, Bucket]] = {}

    def charge(self, user: int, content_bytes: int) -> None:
        now = self._clock()
        buckets = self._buckets.get(user)
        if buckets is None:
            buckets = self._buckets[user] = (Bucket(*self._messages, now), Bucket(*self._bytes, now))
        messages, size = buckets
        if not messages.take(1.0, now):
            raise RateLimited(f"your account is over {messages.rate:g} messages/s")
        if not size.take(content_bytes, now):
            messages.tokens += 1.0  # not sent: give the message back
            raise RateLimited(f"your account is over {size.rate:g} bytes/s of messages")

    def forget(self, user: int) -> None:
        """The user has no session here any more."""
        self._buckets.pop(user, None)

    def set_rates(self, messages_per_s: float, message_burst: int, bytes_per_s: float, byte_burst: int) -> None:
        """New limits (SIGHUP): every account starts again from a full bucket of the new size."""
        self._messages = (messages_per_s, float(message_burst))
        self._bytes = (bytes_per_s, float(byte_burst))
        self._buckets.clear()
