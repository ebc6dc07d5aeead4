# cython: language_level=3
"""The compiled retry keys: their hash (BLAKE2b), a blocked Bloom filter of the hashes in
layers that double, the batch's keys taken into memory, and the sort of a pass's rows. Same API, the same bits and the same errors
as the pure-Python twin ``keyfilter_py.py`` (the reference, which says how it works;
tests/core_ext/test_keyfilter.py runs one suite on both). A layer is a ``bytearray`` read
and written through its pointer."""
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.dict cimport PyDict_GetItemWithError, PyDict_Next
from cpython.list cimport PyList_New, PyList_SET_ITEM
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdio cimport snprintf
from libc.string cimport memcpy, memset

from . import keyfilter_py
from .keyfilter_py import BITS_PER_KEY, BLOCK_BITS, LAYER_MAX, PROBES, SALTS

__all__ = ["KeyFilter", "key_hash", "key_rows", "hold_keys"]

cdef uint32_t[8] _SALTS = [0x47B6137B, 0x44974D91, 0x8824AD5B, 0xA2B7289D,
                           0x705495C7, 0x2DF1424B, 0x9EFC4947, 0x5C6BFB31]


if PROBES != 8 or BLOCK_BITS != 512 or SALTS != tuple(_SALTS):
    raise ImportError("_keyfilter is built for 8 probes a key in blocks of 512 bits with its salts;"
                      " keyfilter_py.py says otherwise")

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


cdef inline uint8_t* _block(bytearray layer, uint64_t u) noexcept:
    """The block (64 bytes) of the unsigned hash ``u`` in ``layer``: as the twin's ``_block``."""
    cdef uint64_t blocks = <uint64_t>PyByteArray_GET_SIZE(layer) // 64
    cdef uint64_t at = (u & <uint64_t>0xFFFFFFFF & (blocks - 1)) * 64
    cdef uint8_t* bits = <uint8_t*>PyByteArray_AS_STRING(layer)
    return bits + at


cdef inline uint32_t _bit(uint64_t u, int i) noexcept:
    """Bit ``i`` of 8 of the unsigned hash ``u`` in its block, as the twin's ``_bits``."""
    return (<uint32_t>(u >> 32) * _SALTS[i]) >> 23


cdef inline bint _holds(bytearray layer, uint64_t u) noexcept:
    cdef const uint8_t* block = _block(layer, u)
    cdef uint32_t p
    cdef int i
    for i in range(8):
        p = _bit(u, i)
        if not (block[p >> 3] >> (p & 7)) & 1:
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
        cdef uint64_t bits = 512  # a block at least
        while bits < <uint64_t>capacity * _BITS_PER_KEY:
            bits *= 2
        self._layers.append(bytearray(bits // 8))
        self._capacity = self._room = capacity

    def add(self, h):
        self._add(_unsigned(h))

    cdef void _add(self, uint64_t u):
        cdef uint32_t p
        cdef uint8_t* block
        cdef int i
        if not self._room:
            self._grow(min(2 * self._capacity, _LAYER_MAX))
        block = _block(self._layers[len(self._layers) - 1], u)
        for i in range(8):
            p = _bit(u, i)
            block[p >> 3] |= <uint8_t>(1 << (p & 7))
        self._room -= 1
        self._count += 1

    def __contains__(self, h):
        cdef uint64_t u = _unsigned(h)
        cdef bytearray layer
        for layer in self._layers:
            if _holds(layer, u):
                return True
        return False

    def __len__(self):
        return self._count

    @property
    def nbytes(self):
        return sum(PyByteArray_GET_SIZE(layer) for layer in self._layers)


# -- key_hash: BLAKE2b (RFC 7693) with an 8-byte digest, unkeyed ---------------------------

cdef uint64_t[8] _IV = [
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL, 0xa54ff53a5f1d36f1ULL,
    0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL, 0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL]

cdef uint8_t[12][16] _SIGMA = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3]]

#: the most bytes of "sender:cmid" hashed from a stack buffer (longer ones: the twin)
cdef enum:
    _KEY_MAX = 512


cdef inline uint64_t _rotr(uint64_t x, int n) noexcept nogil:
    return (x >> n) | (x << (64 - n))


cdef inline uint64_t _load64(const uint8_t* p) noexcept nogil:
    cdef uint64_t x = 0
    cdef int i
    for i in range(7, -1, -1):
        x = (x << 8) | p[i]
    return x


cdef void _compress(uint64_t* h, const uint8_t* block, uint64_t t, bint last) noexcept nogil:
    cdef uint64_t v[16]
    cdef uint64_t m[16]
    cdef int i, r
    cdef const uint8_t* s
    for i in range(16):
        m[i] = _load64(block + 8 * i)
    for i in range(8):
        v[i] = h[i]
        v[i + 8] = _IV[i]
    v[12] ^= t  # the byte counter's high word stays 0: a key is far shorter than 2**64 bytes
    if last:
        v[14] = ~v[14]
    for r in range(12):
        s = _SIGMA[r]
        _g(v, 0, 4, 8, 12, m[s[0]], m[s[1]])
        _g(v, 1, 5, 9, 13, m[s[2]], m[s[3]])
        _g(v, 2, 6, 10, 14, m[s[4]], m[s[5]])
        _g(v, 3, 7, 11, 15, m[s[6]], m[s[7]])
        _g(v, 0, 5, 10, 15, m[s[8]], m[s[9]])
        _g(v, 1, 6, 11, 12, m[s[10]], m[s[11]])
        _g(v, 2, 7, 8, 13, m[s[12]], m[s[13]])
        _g(v, 3, 4, 9, 14, m[s[14]], m[s[15]])
    for i in range(8):
        h[i] ^= v[i] ^ v[i + 8]


cdef inline void _g(uint64_t* v, int a, int b, int c, int d, uint64_t x, uint64_t y) noexcept nogil:
    v[a] = v[a] + v[b] + x
    v[d] = _rotr(v[d] ^ v[a], 32)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 24)
    v[a] = v[a] + v[b] + y
    v[d] = _rotr(v[d] ^ v[a], 16)
    v[c] = v[c] + v[d]
    v[b] = _rotr(v[b] ^ v[c], 63)


cdef uint64_t _blake2b_8(const uint8_t* data, Py_ssize_t n) noexcept nogil:
    """The 8-byte BLAKE2b digest of ``data``, as the little-endian word it is (h[0])."""
    cdef uint64_t h[8]
    cdef uint8_t block[128]
    cdef uint64_t t = 0
    cdef int i
    for i in range(8):
        h[i] = _IV[i]
    h[0] ^= 0x01010000 ^ 8  # depth 1, fanout 1, no key, an 8-byte digest
    while n > 128:
        t += 128
        _compress(h, data, t, False)
        data += 128
        n -= 128
    memset(block, 0, 128)
    memcpy(block, data, n)
    t += <uint64_t>n
    _compress(h, block, t, True)
    return h[0]


def key_hash(sender, cmid):
    """As the twin's: 64 bits of BLAKE2b of "sender:cmid", big-endian, signed. Here in C
    for an int sender and a str cmid (a fifth of the time: the hash of every new message's
    key is the writer's); anything else goes to the twin, which formats it the same way."""
    cdef char buf[_KEY_MAX]
    cdef const char* text
    cdef Py_ssize_t size
    cdef int head
    cdef uint64_t digest, swapped = 0
    cdef long long number
    cdef int overflow = 0, i
    if type(sender) is not int or type(cmid) is not str:
        return keyfilter_py.key_hash(sender, cmid)
    number = PyLong_AsLongLongAndOverflow(sender, &overflow)
    if overflow:
        return keyfilter_py.key_hash(sender, cmid)
    text = PyUnicode_AsUTF8AndSize(cmid, &size)  # UnicodeEncodeError as .encode() raises
    head = snprintf(buf, 24, "%lld:", number)
    if head + size > _KEY_MAX:
        return keyfilter_py.key_hash(sender, cmid)
    memcpy(buf + head, text, size)
    digest = _blake2b_8(<const uint8_t*>buf, head + size)
    for i in range(8):  # the digest's bytes are h[0] little-endian; the key reads them big-endian
        swapped = (swapped << 8) | ((digest >> (8 * i)) & 0xFF)
    return <int64_t>swapped


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


def hold_keys(dict keys, dict hashes, dict held, dict tops, stored):
    """As the twin's: a committed batch's keys into the store's memory, in one C loop (a
    Python loop of dict operations and calls a key before). ``stored`` is this module's
    KeyFilter (another filter is told each hash through its ``add``)."""
    cdef Py_ssize_t pos = 0
    cdef PyObject* key_p
    cdef PyObject* value_p
    cdef PyObject* found
    cdef tuple value
    cdef KeyFilter compiled = stored if type(stored) is KeyFilter else None
    while PyDict_Next(keys, &pos, &key_p, &value_p):
        if type(<object>value_p) is not tuple or len(<tuple>value_p) != 3:
            raise TypeError(f"a held key's value is (id, conv, seq), not {<object>value_p!r}")
        value = <tuple>value_p
        msg_id, conv, seq = value
        found = PyDict_GetItemWithError(hashes, <object>key_p)
        if found != NULL:
            h = <object>found
        elif type(<object>key_p) is tuple:
            h = key_hash(*<tuple>key_p)
        else:
            h = keyfilter_py.key_hash(*<object>key_p)  # (the twin's error)
        found = PyDict_GetItemWithError(held, h)
        if found == NULL:
            held[h] = msg_id
        elif type(<object>found) is tuple:
            held[h] = <tuple>found + (msg_id,)
        else:
            held[h] = (<object>found, msg_id)
        found = PyDict_GetItemWithError(tops, conv)
        if seq > (0 if found == NULL else <object>found):
            tops[conv] = seq
        if compiled is not None:
            compiled._add(_unsigned(h))
        else:
            stored.add(h)
