"""One suite for both key filters (the pure-Python twin and the compiled ``_keyfilter``):
no hash added is ever missed, few others are taken for one, it grows past its capacity,
and the two set the same bits."""
from __future__ import annotations

import random

import pytest

from edgeim.core_ext import _keyfilter, keyfilter_py  # the compiled filter must be built: no skip

IMPLEMENTATIONS = [keyfilter_py, _keyfilter]


@pytest.fixture(params=IMPLEMENTATIONS, ids=["python", "cython"])
def impl(request):
    return request.param


def hashes(n: int, seed: int) -> list[int]:
    """``n`` key hashes as the store makes them: signed 64-bit."""
    rng = random.Random(seed)
    return [rng.getrandbits(64) - 2**63 for _ in range(n)]


def test_every_hash_added_is_held_and_few_others_are(impl):
    f = impl.KeyFilter(20_000)
    added = hashes(20_000, 1)
    for h in added:
        f.add(h)
    assert len(f) == 20_000
    assert all(h in f for h in added)
    others = hashes(50_000, 2)
    wrong = sum(h in f for h in others)
    assert wrong < 50_000 // 500  # about one in 1,700 at capacity


def test_an_empty_filter_holds_nothing(impl):
    f = impl.KeyFilter(1000)
    assert len(f) == 0
    assert not any(h in f for h in hashes(1000, 3))


def test_past_its_capacity_it_grows_and_still_misses_nothing(impl):
    f = impl.KeyFilter(100)
    first = f.nbytes
    added = hashes(3_000, 4)  # five doublings past 100
    for h in added:
        f.add(h)
    assert f.nbytes > 16 * first
    assert all(h in f for h in added)
    wrong = sum(h in f for h in hashes(20_000, 5))
    assert wrong < 20_000 // 200  # each layer at most full: the sum of their rates


def test_the_edges_of_64_bits(impl):
    f = impl.KeyFilter(10)
    edges = [-2**63, -1, 0, 1, 2**63 - 1, 2**64 - 1]
    for h in edges:
        f.add(h)
    assert all(h in f for h in edges)
    assert (2**64 - 1 in f) and (-1 in f)  # the same 64 bits


def test_both_set_the_same_bits():
    """What one filter says of any hash, the other says too: a database's filter does not
    depend on which module built it."""
    added, asked = hashes(5_000, 6), hashes(100_000, 7)
    filters = [impl.KeyFilter(1_000) for impl in IMPLEMENTATIONS]
    for f in filters:
        for h in added:
            f.add(h)
    python, cython = filters
    assert python.nbytes == cython.nbytes
    assert [h in python for h in asked] == [h in cython for h in asked]
    assert sum(h in python for h in asked) > 0  # some false positives to compare


@pytest.mark.parametrize("capacity, error", [(0, ValueError), (-5, ValueError), (1.5, TypeError), ("10", TypeError)])
def test_a_bad_capacity_is_refused(impl, capacity, error):
    with pytest.raises(error, match="capacity"):
        impl.KeyFilter(capacity)


@pytest.mark.parametrize("h", [1.0, "1", None, b"\x01"])
def test_a_hash_that_is_not_an_int_is_refused(impl, h):
    f = impl.KeyFilter(10)
    with pytest.raises(TypeError, match="key hash"):
        f.add(h)
    with pytest.raises(TypeError, match="key hash"):
        h in f  # noqa: B015
    assert len(f) == 0
