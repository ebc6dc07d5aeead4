"""One suite for both token buckets (the pure-Python twin and the compiled ``_buckets``):
refill, refusal, the clamp, and ``take_all``'s all or none."""
from __future__ import annotations

import pytest

from edgeim.core_ext import _buckets, buckets_py  # the compiled buckets must be built: no skip

IMPLEMENTATIONS = [buckets_py, _buckets]


@pytest.fixture(params=IMPLEMENTATIONS, ids=["python", "cython"])
def impl(request):
    return request.param


def state(bucket) -> tuple[float, float]:
    return (bucket.tokens, bucket.at)


def test_a_bucket_starts_full_and_refills_at_its_rate_up_to_its_burst(impl):
    b = impl.Bucket(4.0, 5, 100.0)
    assert (b.tokens, b.burst, b.rate) == (5.0, 5.0, 4.0)
    assert [b.take(1, 100.0) for _ in range(6)] == [True] * 5 + [False]
    assert b.take(1, 100.25)  # a quarter of a second: one token
    assert not b.take(1, 100.25)
    assert b.full_at(100.25) == pytest.approx(101.5)
    assert b.take(5, 200.0)  # long idle: the burst, not more
    assert not b.take(0.5, 200.0)


def test_a_refused_take_takes_nothing_but_brings_the_bucket_up_to_date(impl):
    b = impl.Bucket(1.0, 10, 0.0)
    assert b.take(8, 0.0)
    assert not b.take(5, 1.0)  # holds 3
    assert state(b) == (3.0, 1.0)
    assert b.take(3, 1.0)


def test_an_unclamped_bucket_refuses_more_than_its_burst_a_clamped_one_takes_it_all(impl):
    plain, clamped = impl.Bucket(1.0, 10, 0.0), impl.Bucket(1.0, 10, 0.0, True)
    assert not plain.take(11, 0.0)
    assert plain.tokens == 10.0
    assert clamped.take(1000, 0.0)
    assert clamped.tokens == 0.0
    assert not clamped.take(1000, 5.0)  # half full: a full bucket is asked for


def test_give_back_returns_a_full_bucket_at_most(impl):
    b = impl.Bucket(1.0, 10, 0.0, True)
    assert b.take(1000, 0.0)
    b.give_back(1000)
    assert b.tokens == 10.0
    assert b.take(4, 0.0)
    b.give_back(2)
    assert b.tokens == 8.0


def test_take_all_takes_from_every_bucket_or_none(impl):
    a, b, c = impl.Bucket(1.0, 10, 0.0), impl.Bucket(1.0, 100, 0.0), impl.Bucket(1.0, 3, 0.0, True)
    assert impl.take_all((a, None, b, c), (1, 99, 50, 7), 0.0) == -1  # None: no such budget
    assert [a.tokens, b.tokens, c.tokens] == [9.0, 50.0, 0.0]
    assert impl.take_all((a, b, c), (1, 20, 1), 0.0) == 2  # c is empty: a and b get theirs back
    assert [a.tokens, b.tokens, c.tokens] == [9.0, 50.0, 0.0]
    assert impl.take_all((a, b), (1, 60), 0.0) == 1
    assert [a.tokens, b.tokens] == [9.0, 50.0]
    assert impl.take_all((), (), 0.0) == -1


def test_give_back_returns_what_take_all_took(impl):
    buckets = (impl.Bucket(1.0, 10, 0.0), None, impl.Bucket(1.0, 10, 0.0))
    assert impl.take_all(buckets, (4, 1, 6), 0.0) == -1
    impl.give_back(buckets, (4, 1, 6))
    assert [buckets[0].tokens, buckets[2].tokens] == [10.0, 10.0]


def test_both_come_to_the_same_tokens():
    """The same takes at the same times leave both implementations' buckets alike."""
    import random
    rng = random.Random(8)
    steps = [(rng.uniform(0, 30), rng.uniform(0, 0.3), rng.random() < 0.5) for _ in range(2000)]
    results = []
    for impl in IMPLEMENTATIONS:
        b, now, seen = impl.Bucket(7.5, 20, 0.0, True), 0.0, []
        for amount, dt, clamp_free in steps:
            now += dt
            seen.append(b.take(amount, now) if clamp_free else impl.take_all((b,), (amount,), now))
            seen.append(round(b.tokens, 9))
        results.append(seen)
    assert results[0] == results[1]
    assert True in results[0] and False in results[0] and -1 in results[0] and 0 in results[0]
