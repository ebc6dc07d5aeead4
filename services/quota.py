"""What one account may cost, across all its sessions on this node: messages per second,
content bytes per second. Per-connection limits alone let an account multiply its budget
by opening more terminals.

A budget outlives the account's sessions: when its last session here closes, a bucket
that is not full is kept until it would be full again (a full bucket records nothing), so
reconnecting does not give a spent budget back. ``Left`` holds those, bounded."""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from ..core_ext.buckets import Bucket, give_back, take_all
from ..core_ext.errors import RateLimited

__all__ = ["Bucket", "UserBuckets", "SendQuota", "Left", "SharedBuckets"]

#: accounts that left whose spent budgets a ledger keeps, at most (the oldest go first)
MAX_LEFT = 100_000


class Left:
    """Accounts with no session here whose buckets are kept until ``full_at``: ``drop`` is
    called for each once that passes (lazily, at the next ``leave`` or ``back``), or when
    more than ``limit`` are kept (the longest gone first)."""

    __slots__ = ("_until", "_drop", "_limit")

    def __init__(self, drop: Callable[[int], None], limit: int = MAX_LEFT) -> None:
        self._until: OrderedDict[int, float] = OrderedDict()
        self._drop = drop
        self._limit = limit

    def leave(self, user: int, full_at: float, now: float) -> None:
        if full_at <= now:
            self._drop(user)
        else:
            self._until[user] = full_at
            self._until.move_to_end(user)
        self.prune(now)

    def back(self, user: int) -> None:
        """The account is charged again: it has a session here."""
        self._until.pop(user, None)

    def prune(self, now: float) -> None:
        until = self._until
        while until:
            user, full_at = next(iter(until.items()))
            if full_at > now and len(until) <= self._limit:
                return
            del until[user]
            self._drop(user)

    def __contains__(self, user: int) -> bool:
        return user in self._until

    def __len__(self) -> int:
        return len(self._until)

    def clear(self) -> None:
        self._until.clear()


class SharedBuckets:
    """One token bucket per key that many accounts share (a group): ``take(key, amount)``
    is True if the amount was taken (more than the bucket holds asks for a full one).
    At most ``limit`` are kept: past it, the full ones go, then the oldest."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 limit: int = MAX_LEFT) -> None:
        self.rate, self.burst = rate, float(burst)
        self._clock = clock
        self._limit = limit
        self._buckets: dict[object, Bucket] = {}

    def take(self, key: object, amount: float) -> bool:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._limit:
                self._prune(now)
            bucket = self._buckets[key] = Bucket(self.rate, self.burst, now, True)
        return bucket.take(amount, now)

    def _prune(self, now: float) -> None:
        kept = {key: b for key, b in self._buckets.items() if b.full_at(now) > now}
        while len(kept) >= self._limit:
            del kept[next(iter(kept))]
        self._buckets = kept

    def __len__(self) -> int:
        return len(self._buckets)


class UserBuckets:
    """One token bucket per account: ``charge(user)`` takes a token or raises RATE_LIMITED
    saying ``what`` is over; ``forget(user)`` once the account has no session here (its
    bucket is kept until it is full again: see the module docstring)."""

    def __init__(self, rate: float, burst: float, what: str, clock: Callable[[], float] = time.monotonic,
                 max_left: int = MAX_LEFT) -> None:
        self._rate, self._burst, self._what, self._clock = rate, burst, what, clock
        self._buckets: dict[int, Bucket] = {}
        self._left = Left(self._drop, max_left)

    def charge(self, user: int, amount: float = 1.0) -> None:
        """Take ``amount`` tokens (all or none)."""
        now = self._clock()
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = Bucket(self._rate, self._burst, now)
        elif user in self._left:
            self._left.back(user)
        if not bucket.take(amount, now):
            raise RateLimited(f"over {self._what}")

    def forget(self, user: int) -> None:
        bucket = self._buckets.get(user)
        now = self._clock()
        if bucket is not None:
            self._left.leave(user, bucket.full_at(now), now)
        else:
            self._left.prune(now)

    def _drop(self, user: int) -> None:
        self._buckets.pop(user, None)

    def __len__(self) -> int:
        """Accounts with a bucket here (online, or gone with a spent budget)."""
        return len(self._buckets)


#: what RATE_LIMITED says of the user's budget ``take_all`` refused, by its place, and of the node's
_OVER = ("your account is over {:g} messages/s", "your account is over {:.0f} bytes/s of messages",
         "your account is over {:g} pushes/s (a message costs one per member it reaches)",
         "your account is over {:.0f} bytes/s of pushes (a message costs its size per member it reaches)")
_NODE_OVER = ("the node is over {:g} group pushes/s; retry later",
              "the node is over {:.0f} bytes/s of group pushes; retry later")


class SendQuota:
    """Charges each SEND to its account: RATE_LIMITED, with nothing stored, when the account
    is over its messages or bytes per second, or over what its messages may fan out.

    A message fans out to its ``audience`` (a group's members; 1 for a private message),
    each getting a push of its content: the account's fan-out budget is charged that many
    pushes and that many times the content's bytes, so posting to a 2,000-member group
    costs 2,000 times a private message. The node's fan-out budget is charged the same by
    every group message (audience above 1), whoever sends it. A charge larger than a
    bucket holds asks for a full bucket (a message to a group of any size can be sent).
    A fan-out budget of None is not kept."""

    def __init__(self, messages_per_s: float, message_burst: int, bytes_per_s: float, byte_burst: int,
                 clock: Callable[[], float] = time.monotonic, max_left: int = MAX_LEFT, *,
                 pushes: tuple[float, float] | None = None, push_bytes: tuple[float, float] | None = None,
                 node_pushes: tuple[float, float] | None = None,
                 node_push_bytes: tuple[float, float] | None = None) -> None:
        self._messages = (messages_per_s, float(message_burst))
        self._bytes = (bytes_per_s, float(byte_burst))
        self._pushes = pushes
        self._push_bytes = push_bytes
        self._clock = clock
        self._buckets: dict[int, tuple[Bucket | None, ...]] = {}
        self._left = Left(self._drop, max_left)
        now = clock()
        #: the node's fan-out budget: (pushes, push bytes), each None when not kept
        self._node = (Bucket(*node_pushes, now, True) if node_pushes else None,
                      Bucket(*node_push_bytes, now, True) if node_push_bytes else None)

    def charge(self, user: int, content_bytes: int, audience: int = 1) -> None:
        now = self._clock()
        buckets = self._buckets.get(user)
        if buckets is None:
            buckets = self._buckets[user] = self._new(now)
        elif user in self._left:
            self._left.back(user)
        # the user's four budgets, then the node's two: each refusal gives back what the
        # earlier buckets took (the push budgets are clamped: a full bucket at most)
        amounts = (1.0, content_bytes, audience, audience * content_bytes)
        refused = take_all(buckets, amounts, now)
        if refused >= 0:
            raise RateLimited(_OVER[refused].format(buckets[refused].rate))  # type: ignore[union-attr]
        if audience > 1:
            refused = take_all(self._node, amounts[2:], now)
            if refused >= 0:
                give_back(buckets, amounts)
                raise RateLimited(_NODE_OVER[refused].format(self._node[refused].rate))  # type: ignore[union-attr]

    def charge_all(self, user: int, sizes: list[int], audience: int = 1) -> None:
        """Charge several messages at once (a FORWARD's copies, ``sizes`` their content
        bytes), as ``charge`` each: all of them, or, refused, none (what the earlier ones
        took is given back)."""
        done: list[int] = []
        try:
            for size in sizes:
                self.charge(user, size, audience)
                done.append(size)
        except RateLimited:
            buckets = self._buckets[user]
            for size in done:
                amounts = (1.0, size, audience, audience * size)
                give_back(buckets, amounts)
                if audience > 1:
                    give_back(self._node, amounts[2:])
            raise

    def _new(self, now: float) -> tuple[Bucket | None, ...]:
        return (Bucket(*self._messages, now), Bucket(*self._bytes, now),
                Bucket(*self._pushes, now, True) if self._pushes else None,
                Bucket(*self._push_bytes, now, True) if self._push_bytes else None)

    def forget(self, user: int) -> None:
        """The user has no session here any more: what they spent is kept until refilled."""
        buckets = self._buckets.get(user)
        now = self._clock()
        if buckets is not None:
            self._left.leave(user, max(b.full_at(now) for b in buckets if b is not None), now)
        else:
            self._left.prune(now)

    def _drop(self, user: int) -> None:
        self._buckets.pop(user, None)

    def __len__(self) -> int:
        """Accounts with buckets here (online, or gone with a spent budget)."""
        return len(self._buckets)

    def set_rates(self, messages_per_s: float, message_burst: int, bytes_per_s: float, byte_burst: int) -> None:
        """New limits (SIGHUP): every account starts again from a full bucket of the new size."""
        self._messages = (messages_per_s, float(message_burst))
        self._bytes = (bytes_per_s, float(byte_burst))
        self._buckets.clear()
        self._left.clear()
