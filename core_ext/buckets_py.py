"""Token buckets, pure Python: the reference of the compiled ``_buckets.pyx`` (same API
and results: tests/core_ext/test_buckets.py runs one suite on both). Every SEND takes
from four of them (services/quota.py), so they are a hot path.

A bucket holds up to ``burst`` tokens and gains ``rate`` a second. A *clamped* bucket
takes at most a full bucket for any amount (a message to a group of any size may be
sent, when the bucket is full); an unclamped one refuses an amount above its burst.
``take_all`` takes from several buckets, all or none."""
from __future__ import annotations

from typing import Sequence

__all__ = ["Bucket", "take_all", "give_back"]


class Bucket:
    """A token bucket: ``rate`` tokens a second up to ``burst``; ``at``: when ``tokens``
    was last brought up to date."""

    __slots__ = ("rate", "burst", "tokens", "at", "clamp")

    def __init__(self, rate: float, burst: float, now: float, clamp: bool = False) -> None:
        self.rate, self.burst, self.tokens, self.at = float(rate), float(burst), float(burst), float(now)
        self.clamp = bool(clamp)

    def take(self, amount: float, now: float) -> bool:
        """Take ``amount`` (a full bucket at most, if clamped) if the bucket holds it."""
        tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.clamp and amount > self.burst:
            amount = self.burst
        if tokens < amount:
            self.tokens = tokens
            return False
        self.tokens = tokens - amount
        return True

    def give_back(self, amount: float) -> None:
        """Return what a take took (a full bucket at most; never above the burst)."""
        self.tokens = min(self.burst, self.tokens + min(float(amount), self.burst))

    def full_at(self, now: float) -> float:
        """When the bucket will be full again (``now`` if it is)."""
        tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        return now + (self.burst - tokens) / self.rate


def take_all(buckets: Sequence[Bucket | None], amounts: Sequence[float], now: float) -> int:
    """Take ``amounts[i]`` from ``buckets[i]`` (None: no such budget), one after another:
    -1 when every bucket had it; else the index of the first that had not, once what
    the ones before it took is given back (nothing is spent)."""
    for i, bucket in enumerate(buckets):
        if bucket is not None and not bucket.take(amounts[i], now):
            give_back(buckets[:i], amounts)
            return i
    return -1


def give_back(buckets: Sequence[Bucket | None], amounts: Sequence[float]) -> None:
    """Return ``amounts[i]`` to ``buckets[i]``: what ``take_all`` took from them."""
    for i, bucket in enumerate(buckets):
        if bucket is not None:
            bucket.give_back(amounts[i])
