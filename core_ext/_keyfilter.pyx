# cython: language_level=3
"""The compiled key filter: a Bloom filter of 64-bit key hashes, in layers that double.
Same API, the same bits and the same errors as its pure-Python twin ``keyfilter_py.py``
(the reference, which says how it works; tests/core_ext/test_keyfilter.py runs one suite
on both). A layer is a ``bytearray`` read and written through its pointer."""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memset

from .keyfilter_py import BITS_PER_KEY, LAYER_MAX, PROBES

__all__ = ["KeyFilter", "key_rows"]

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


cdef struct _Row:
    uint64_t order  # the hash with its sign bit flipped: unsigned order is signed order
    int64_t id
    PyObject* h_obj  # the dict's own int objects, borrowed while the dict is held
    PyObject* id_obj


cdef inline int64_t _int64(object value) except? -1:
    if type(value) is not int:
        raise TypeError(f"a key row holds ints, not {type(value).__name__}")
    return <int64_t>value  # OverflowError outside 64 bits


cdef void _radix_sort(_Row* rows, _Row* spare, Py_ssize_t n) noexcept nogil:
    """Sort by ``order``: eight stable passes of a byte each, least significant first
    (8 is even: the rows end where they began)."""
    cdef Py_ssize_t counts[256]
    cdef Py_ssize_t i, total, c
    cdef int shift, b
    cdef _Row* src = rows
    cdef _Row* dst = spare
    cdef _Row* swap
    for shift in range(0, 64, 8):
        memset(counts, 0, sizeof(counts))
        for i in range(n):
            counts[(src[i].order >> shift) & 0xFF] += 1
        total = 0
        for b in range(256):
            c = counts[b]
            counts[b] = total
            total += c
        for i in range(n):
            b = (src[i].order >> shift) & 0xFF
            dst[counts[b]] = src[i]
            counts[b] += 1
        swap = src
        src = dst
        dst = swap


cdef void _order_ids(_Row* rows, Py_ssize_t n) noexcept nogil:
    """Within a run of rows of one hash (keys that share it: rare), by id."""
    cdef Py_ssize_t i, j
    cdef _Row row
    for i in range(1, n):
        if rows[i].order != rows[i - 1].order or rows[i].id >= rows[i - 1].id:
            continue
        row = rows[i]
        j = i
        while j > 0 and rows[j - 1].order == row.order and rows[j - 1].id > row.id:
            rows[j] = rows[j - 1]
            j -= 1
        rows[j] = row


def key_rows(dict held):
    """The (hash, id) rows of ``held`` sorted, laid end to end, as the twin's; here with a
    radix sort over a C array, and the dict's own int objects in the list (a list of
    200,000 tuples took Python's sort 0.13 s, with the GIL held; this takes some ms)."""
    cdef Py_ssize_t n = 0, k = 0
    cdef uint64_t order
    cdef _Row* rows
    cdef list out
    for ids in held.values():
        n += len(<tuple>ids) if type(ids) is tuple else 1
    rows = <_Row*>PyMem_Malloc(2 * max(n, 1) * sizeof(_Row))
    if rows == NULL:
        raise MemoryError()
    try:
        for key, ids in held.items():
            order = <uint64_t>_int64(key) ^ (<uint64_t>1 << 63)
            if type(ids) is tuple:
                for msg_id in <tuple>ids:
                    rows[k] = _Row(order, _int64(msg_id), <PyObject*>key, <PyObject*>msg_id)
                    k += 1
            else:
                rows[k] = _Row(order, _int64(ids), <PyObject*>key, <PyObject*>ids)
                k += 1
        _radix_sort(rows, rows + n, n)
        _order_ids(rows, n)
        out = PyList_New(2 * n)
        for k in range(n):
            Py_INCREF(<object>rows[k].h_obj)
            PyList_SET_ITEM(out, 2 * k, <object>rows[k].h_obj)
            Py_INCREF(<object>rows[k].id_obj)
            PyList_SET_ITEM(out, 2 * k + 1, <object>rows[k].id_obj)
        return out
    finally:
        PyMem_Free(rows)
