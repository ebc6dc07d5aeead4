"""Guesses: the per-account password-check limit, on a fake clock: the documented backoff
(free failures, then a lock that doubles up to its cap), what clears it, one check at a
time per account, and bounded memory."""
from __future__ import annotations

import asyncio

import pytest

from edgeim.core_ext.errors import RateLimited
from edgeim.services.auth import Guesses


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def fail(guesses: Guesses, account: str = "bob") -> None:
    await guesses.begin(account)
    guesses.end(account, False)


async def locked_for(guesses: Guesses, clock: Clock, account: str = "bob") -> float:
    """Seconds until ``account`` may be checked again (0: now)."""
    start = clock.now
    while True:
        try:
            await guesses.begin(account)
        except RateLimited:
            clock.now += 0.5
            continue
        guesses.end(account, None)
        waited, clock.now = clock.now - start, start
        return waited


async def test_free_failures_then_a_lock_that_doubles_up_to_its_cap():
    clock = Clock()
    guesses = Guesses(3, 2.0, 20.0, clock)
    windows = []
    for _ in range(8):
        await fail(guesses)
        windows.append(await locked_for(guesses, clock))
        clock.now += windows[-1]  # the next guess as soon as it may be made

    assert windows == [0, 0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]


async def test_a_success_or_a_quiet_day_clears_the_count_and_names_are_case_folded():
    clock = Clock()
    guesses = Guesses(2, 60.0, 600.0, clock)
    await fail(guesses, Guesses.key("Bob"))
    await fail(guesses, Guesses.key("bob"))
    with pytest.raises(RateLimited, match="retry in 60 s"):
        await guesses.begin(Guesses.key("BOB"))
    clock.now += 60
    await guesses.begin("bob")
    guesses.end("bob", True)  # the right password
    await fail(guesses)
    assert await locked_for(guesses, clock) == 0  # one failure since: free again
    await fail(guesses)
    clock.now += Guesses.FORGET_AFTER
    await fail(guesses)
    assert await locked_for(guesses, clock) == 0  # the failures of a day ago are forgotten


async def test_one_check_per_account_at_a_time_others_wait_then_see_the_lock():
    guesses = Guesses(1, 60.0, 600.0, Clock())
    await guesses.begin("bob")
    waiting = [asyncio.create_task(guesses.begin("bob")) for _ in range(3)]
    await guesses.begin("carol")  # another account is not held up
    guesses.end("carol", True)
    await asyncio.sleep(0)
    assert not any(t.done() for t in waiting)

    guesses.end("bob", False)  # the first check failed: bob is locked
    results = await asyncio.gather(*waiting, return_exceptions=True)

    assert all(isinstance(r, RateLimited) for r in results)
    assert guesses._turns == {}


async def test_memory_is_bounded_and_locked_accounts_go_last():
    clock = Clock()
    guesses = Guesses(1, 60.0, 600.0, clock, max_accounts=4)
    await fail(guesses, "target")  # locked
    for n in range(10):
        guesses._free = 2  # the others are only counted, not locked
        await fail(guesses, f"spray{n}")

    assert len(guesses._failures) == 4 and "target" in guesses._failures
