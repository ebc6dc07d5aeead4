"""One suite for both key filters (the pure-Python twin and the compiled ``_keyfilter``):
no hash added is ever missed, few others are taken for one, it grows past its capacity,
and the two set the same bits. Then ``key_rows``, the sorted rows of a pass of the store's
held keys: both give the same list, and refuse what is not two 64-bit ints. Then
``key_hash``: BLAKE2b, as hashlib makes it, whatever the key's length. Last ``hold_keys``,
a committed batch's keys into the store's memory: the same ids, tops and filter."""
from __future__ import annotations

import hashlib
import random
import string

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


# -- the rows of a pass of held keys, sorted ----------------------------------------------


def test_key_rows_are_the_held_rows_sorted_and_laid_end_to_end(impl):
    held = {h: i for i, h in enumerate(hashes(5_000, 3))}
    held[-2**63], held[2**63 - 1], held[0] = 7, 8, 9
    flat = impl.key_rows(held)
    pairs = list(zip(flat[::2], flat[1::2]))
    assert pairs == sorted(held.items())
    assert flat[:2] == [-2**63, 7] and flat[-2:] == [2**63 - 1, 8]


def test_a_hash_that_keys_share_gives_a_row_per_id_in_id_order(impl):
    flat = impl.key_rows({5: (30, -4, 12), -1: 2, 6: 1, 4: (2**63 - 1, -2**63)})
    assert flat == [-1, 2, 4, -2**63, 4, 2**63 - 1, 5, -4, 5, 12, 5, 30, 6, 1]


def test_nothing_held_is_no_rows(impl):
    assert impl.key_rows({}) == []


def test_both_sort_alike_over_random_shared_hashes():
    rng = random.Random(4)
    ids: dict[int, list[int]] = {}
    for _ in range(3_000):  # few hashes, many keys each: the ids sort within a hash
        ids.setdefault(rng.choice([-3, 0, 2, 2**40, -2**50]), []).append(rng.randrange(-2**63, 2**63))
    held = {h: tuple(some) for h, some in ids.items()}
    held[7] = 1
    assert _keyfilter.key_rows(held) == keyfilter_py.key_rows(held)


@pytest.mark.parametrize("held, error", [({1.5: 1}, TypeError), ({1: "2"}, TypeError), ({1: (2, None)}, TypeError),
                                         ({2**63: 1}, OverflowError), ({1: (2**64,)}, OverflowError),
                                         ({1: -2**63 - 1}, OverflowError)])
def test_a_row_that_is_not_two_64_bit_ints_is_refused(impl, held, error):
    with pytest.raises(error):
        impl.key_rows(held)


# -- the hash of a retry key ----------------------------------------------------------------


def reference_hash(sender, cmid) -> int:
    """What message_keys holds: 8 bytes of BLAKE2b of "sender:cmid", big-endian, signed."""
    return int.from_bytes(hashlib.blake2b(f"{sender}:{cmid}".encode(), digest_size=8).digest(), "big",
                          signed=True)


def test_key_hash_is_blake2b_of_the_key_across_block_sizes(impl):
    rng = random.Random(5)
    letters = string.ascii_letters + string.digits + "-_é中😀"
    for size in [*range(0, 140), 250, 255, 256, 257, 383, 384, 385, 505, 506, 507, 511, 512, 513, 2000]:
        cmid = "".join(rng.choice(letters) for _ in range(size))
        sender = rng.choice([1, 7, 10**9, 2**31, 2**63 - 1, -1, -2**63, 0])
        assert impl.key_hash(sender, cmid) == reference_hash(sender, cmid), (sender, size)


@pytest.mark.parametrize("sender, cmid", [(2**63, "a"), (-2**63 - 1, "a"), (10**40, "x" * 600), (True, "a"),
                                          (1, 5), ("7", "b")])
def test_key_hash_of_odd_keys_is_the_same_hash(impl, sender, cmid):
    """Past 64 bits or not (int, str): formatted as the f-string formats them."""
    assert impl.key_hash(sender, cmid) == reference_hash(sender, cmid)


def test_a_cmid_that_is_not_utf8_is_refused(impl):
    with pytest.raises(UnicodeEncodeError):
        impl.key_hash(1, "a\ud800")


def test_hold_keys_takes_a_batch_into_memory(impl):
    """Both give the same held ids (a tuple once keys share a hash), the same conversation
    tops, and the filter holds every hash; a hash missing from ``hashes`` is made."""
    keys = {(1, "a"): (10, "p1_2", 5), (1, "b"): (11, "p1_2", 6), (2, "c"): (12, "p2_3", 3),
            (3, "d"): (13, "g7", 1), (4, "e"): (14, "p4_5", 2)}
    hashes = {(1, "a"): 7, (1, "b"): 7, (2, "c"): -8}  # a and b share a hash; d and e are made
    held = {-8: 99, 42: (1, 2)}  # -8 held already for an earlier key
    tops = {"p1_2": 9, "p2_3": 1}
    stored = impl.KeyFilter(100)
    impl.hold_keys(keys, hashes, held, tops, stored)
    made_d, made_e = impl.key_hash(3, "d"), impl.key_hash(4, "e")
    assert held == {7: (10, 11), -8: (99, 12), 42: (1, 2), made_d: 13, made_e: 14}
    assert tops == {"p1_2": 9, "p2_3": 3, "g7": 1, "p4_5": 2}
    assert all(h in stored for h in (7, -8, made_d, made_e)) and len(stored) == 5
    held_again = {}
    impl.hold_keys({(5, "f"): (15, "p5_6", 1)}, {}, held_again, {}, keyfilter_py.KeyFilter(10))
    assert held_again == {impl.key_hash(5, "f"): 15}  # any filter with an add


@pytest.mark.parametrize("value", [(1, "p1_2"), [1, "p1_2", 3], 7])
def test_hold_keys_refuses_a_value_that_is_not_id_conv_seq(impl, value):
    with pytest.raises(TypeError):
        impl.hold_keys({(1, "a"): value}, {}, {}, {}, impl.KeyFilter(10))
