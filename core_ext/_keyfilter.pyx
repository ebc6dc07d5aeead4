# cython: language_level=3
"""The compiled key filter: a Bloom filter of 64-bit key hashes, in layers that double.
Same API, the same bits and the same errors as its pure-Python twin ``keyfilter_py.py``
(the reference, which says how it works; tests/core_ext/test_keyfilter.py runs one suite
on both). A layer is a ``bytearray`` read and written through its pointer."""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint64_t

from .keyfilter_py import BITS_PER_KEY, LAYER_MAX, PROBES

__all__ = ["KeyFilter"]

if PROBES != 8:
    raise ImportError(f"_keyfilter is built for 8 probes a key, keyfilter_py.py says {PROBES}")

cdef uint64_t _BITS_PER_KEY = BITS_PER_KEY
cdef Py_ssize_t _LAYER_MAX = LAYER_MAX


cdef inline uint64_t _unsigned(object h) except? 0:
    """``h`` mod 2**64, as the twin's ``h & (2**64 - 1)``."""
    if type(h) is not int:
        raise TypeError(f"a key hash is an int, not {type(h).__name__}")
    try:
        return <uint64_t>(<int64_t>h)
    except OverflowError:
        return <uint64_t>(h & 0xFFFFFFFFFFFFFFFF)


cdef inline bint _holds(bytearray layer, uint64_t a, uint64_t b) noexcept:
    cdef const uint8_t* bits = <const uint8_t*>PyByteArray_AS_STRING(layer)
    cdef uint64_t mask = <uint64_t>PyByteArray_GET_SIZE(layer) * 8 - 1
    cdef uint64_t p
    cdef int i
    for i in range(8):
        p = (a + i * b) & mask
        if not (bits[p >> 3] >> (p & 7)) & 1:
            return False
    return True


cdef class KeyFilter:
    cdef list _layers
    cdef Py_ssize_t _capacity, _room, _count

    def __init__(self, capacity):
        if type(capacity) is not int:
            raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._layers = []
        self._count = 0
        self._grow(min(capacity, _LAYER_MAX))

    cdef void _grow(self, Py_ssize_t capacity):
        cdef uint64_t bits = 64
        while bits < <uint64_t>capacity * _BITS_PER_KEY:
            bits *= 2
        self._layers.append(bytearray(bits // 8))
        self._capacity = self._room = capacity

    def add(self, h):
        cdef uint64_t u = _unsigned(h)
        cdef uint64_t a = u & 0xFFFFFFFF, b = (u >> 32) | 1, mask, p
        cdef uint8_t* bits
        cdef bytearray layer
        cdef int i
        if not self._room:
            self._grow(min(2 * self._capacity, _LAYER_MAX))
        layer = self._layers[len(self._layers) - 1]
        bits = <uint8_t*>PyByteArray_AS_STRING(layer)
        mask = <uint64_t>PyByteArray_GET_SIZE(layer) * 8 - 1
        for i in range(8):
            p = (a + i * b) & mask
            bits[p >> 3] |= <uint8_t>(1 << (p & 7))
        self._room -= 1
        self._count += 1

    def __contains__(self, h):
        cdef uint64_t u = _unsigned(h)
        cdef uint64_t a = u & 0xFFFFFFFF, b = (u >> 32) | 1
        cdef bytearray layer
        for layer in self._layers:
            if _holds(layer, a, b):
                return True
        return False

    def __len__(self):
        return self._count

    @property
    def nbytes(self):
        return sum(PyByteArray_GET_SIZE(layer) for layer in self._layers)
