"""The store's retry keys, pure Python: the reference of the compiled ``_keyfilter.pyx``
(same API and the same bits: tests/core_ext/test_keyfilter.py runs one suite on both).
``key_hash`` makes a key's 64-bit hash, ``KeyFilter`` remembers the hashes stored, and
``key_rows`` sorts a pass of the hashes the store held in memory, and ``hold_keys`` takes a
committed batch's keys into what it holds.

A Bloom filter of 64-bit key hashes (the store's retry keys, already BLAKE2b): ``h in f``
is False for a hash never added, and True for one added or, rarely, for another (about
one in 1,700 at capacity). The store asks it before it looks a key up in its table, so a
new message's key, nearly every one, costs no lookup.

It grows instead of filling up: a *layer* of 16 bits a key holds ``capacity`` keys, and
the next one is twice as large (a scalable Bloom filter). A layer is cut into blocks of
512 bits, one 64-byte cache line each, and a hash sets 8 bits of one block (a blocked
Bloom filter: one cache line read or written a key instead of eight, which matters once
a layer is larger than the caches). The hash's low 32 bits pick the block; in it, bit i
of 8 is the top 9 bits of the high 32 bits times the odd constant ``SALTS[i]``, modulo
2**32 (the eight salts of Apache Parquet's split block Bloom filter, its format spec).
That takes about one in 1,000 other hashes at capacity (one in 1,700 with the 8 bits
anywhere in the layer; bits at ``c + i * d`` in the block, a step from the hash, took
one in 530: too many keys share a step).
"""
from __future__ import annotations

from hashlib import blake2b

__all__ = ["KeyFilter", "key_hash", "key_rows", "hold_keys", "PROBES", "BITS_PER_KEY", "BLOCK_BITS", "SALTS", "LAYER_MAX"]

PROBES = 8
BITS_PER_KEY = 16
BLOCK_BITS = 512  # the bits of a key are in one block of this many (a 64-byte cache line)
SALTS = (0x47B6137B, 0x44974D91, 0x8824AD5B, 0xA2B7289D, 0x705495C7, 0x2DF1424B, 0x9EFC4947, 0x5C6BFB31)
#: the most keys one layer holds (2**32 bits, 512 MiB): past it, layers stay this size
LAYER_MAX = 2**28
_I64_MIN, _I64_MAX = -2**63, 2**63 - 1
_U64 = 2**64 - 1
_U32 = 2**32 - 1


class KeyFilter:
    """``add(h)``, ``h in f``, ``len(f)`` (keys added) and ``nbytes`` (bits held)."""

    __slots__ = ("_layers", "_capacity", "_room", "_count")

    def __init__(self, capacity: int) -> None:
        if type(capacity) is not int:
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._layers: list[bytearray] = []
        self._capacity = 0  # keys the newest layer holds
        self._room = 0  # keys it takes before the next layer
        self._count = 0
        self._grow(min(capacity, LAYER_MAX))

    def _grow(self, capacity: int) -> None:
        bits = BLOCK_BITS  # a power of two: a block is picked by masking
        while bits < capacity * BITS_PER_KEY:
            bits *= 2
        self._layers.append(bytearray(bits // 8))
        self._capacity = self._room = capacity

    def add(self, h: int) -> None:
        if type(h) is not int:
            raise TypeError(f"a key hash is an int, not {type(h).__name__}")
        if not self._room:
            self._grow(min(2 * self._capacity, LAYER_MAX))
        layer = self._layers[-1]
        u = h & _U64
        base = _block(u, layer)
        for p in _bits(u):
            layer[base + (p >> 3)] |= 1 << (p & 7)
        self._room -= 1
        self._count += 1

    def __contains__(self, h: object) -> bool:
        if type(h) is not int:
            raise TypeError(f"a key hash is an int, not {type(h).__name__}")
        u = h & _U64
        bits = _bits(u)
        for layer in self._layers:
            base = _block(u, layer)
            if all(layer[base + (p >> 3)] >> (p & 7) & 1 for p in bits):
                return True
        return False

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return sum(len(layer) for layer in self._layers)


def _block(u: int, layer: bytearray) -> int:
    """The first byte in ``layer`` of the block of the unsigned hash ``u``."""
    blocks = len(layer) * 8 // BLOCK_BITS
    return (u & _U32 & (blocks - 1)) * (BLOCK_BITS // 8)


def _bits(u: int) -> list[int]:
    """The bits of the unsigned hash ``u`` in its block (0..511)."""
    high = u >> 32
    return [(high * salt & _U32) >> 23 for salt in SALTS]


def key_hash(sender: int, cmid: str) -> int:
    """A retry key's place in the store's message_keys: 64 bits of BLAKE2b of
    "sender:cmid" (UTF-8), read big-endian and signed as SQLite's integers are. Two keys
    may share one; the store checks a hit against the message."""
    return int.from_bytes(blake2b(f"{sender}:{cmid}".encode(), digest_size=8).digest(), "big", signed=True)


def key_rows(held: dict[int, int | tuple[int, ...]]) -> list[int]:
    """The (hash, id) rows of ``held`` (key hash -> message id, or a tuple of ids when keys
    share a hash), sorted, laid end to end: ``[h0, id0, h1, id1, ...]``. The store writes a
    pass of its held keys in this order. Both are SQLite integers: an int outside 64 bits
    raises OverflowError, anything else TypeError."""
    rows = []
    for h, ids in held.items():
        for msg_id in ids if type(ids) is tuple else (ids,):
            rows.append((_int64(h), _int64(msg_id)))
    rows.sort()
    return [value for row in rows for value in row]


def hold_keys(keys: dict[tuple[int, str], tuple[int, str, int]], hashes: dict[tuple[int, str], int],
              held: dict[int, int | tuple[int, ...]], tops: dict[str, int], stored: KeyFilter) -> None:
    """Take a committed batch's retry keys into the store's memory: ``keys`` maps (sender,
    cmid) to (message id, conv, seq). Each key's hash (from ``hashes``, else made here)
    maps to its message id in ``held`` (a tuple of ids once keys share a hash), ``tops``
    keeps each conversation's highest seq, and ``stored`` takes the hash. Values of
    ``keys`` that are not 3-tuples raise TypeError."""
    for key, value in keys.items():
        if type(value) is not tuple or len(value) != 3:
            raise TypeError(f"a held key's value is (id, conv, seq), not {value!r}")
        msg_id, conv, seq = value
        h = hashes.get(key)
        if h is None:
            h = key_hash(*key)
        had = held.get(h)
        if had is None:
            held[h] = msg_id
        else:
            held[h] = (*had, msg_id) if type(had) is tuple else (had, msg_id)
        if seq > tops.get(conv, 0):
            tops[conv] = seq
        stored.add(h)


def _int64(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"a key row holds ints, not {type(value).__name__}")
    if not _I64_MIN <= value <= _I64_MAX:
        raise OverflowError(f"{value} is outside 64 bits")
    return value
