# cython: language_level=3
"""Compiled frames of a stored message: its SEND_ACK and its pushes, written straight into
one ``bytes`` (header and MessagePack body) with no body Struct, no intermediate ``bytes``
and one copy of each string. Same bytes as the twin ``frames_py.py``, which goes through
msgspec (tests/core_ext/test_frames.py holds them equal over generated messages).

MessagePack as msgspec writes it: a map with the Struct's keys in field order (``sender``
renamed ``from``; ``Message`` leaves out the keys after ``ts`` that hold their default),
each integer in its smallest form, strings as UTF-8. A content that is not a string (the
map of a rich message) is encoded by msgspec and spliced in: MessagePack values simply
follow each other.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

include "_header.pxi"

import msgspec

from . import bodies as _bodies
from . import content as _content
from .errors import FrameError
from .protocol import MAX_BODY_SIZE, VERSION, ErrorCode, Flag, Op

__all__ = ["ack_frame", "message_frame", "settle_sends"]

cdef uint8_t _version = VERSION
cdef Py_ssize_t _max_body = MAX_BODY_SIZE
cdef uint8_t _SEND_ACK = Op.SEND_ACK
cdef int _SEND = Op.SEND
cdef uint16_t _GROUP = Flag.GROUP
cdef int _TEXT = _content.TEXT
cdef object _FRAME_TOO_LARGE = ErrorCode.FRAME_TOO_LARGE
cdef object _wire = _content.wire
cdef object _encode = msgspec.msgpack.Encoder().encode
# msgspec sizes a Struct's map header by its number of fields, not by the keys it writes:
# a Message of 16 fields or more gets a map16 header (de 00 NN) whatever it leaves out
cdef bint _MESSAGE_MAP16 = len(_bodies.Message.__struct_fields__) >= 16


cdef struct Buf:
    uint8_t* data
    Py_ssize_t size
    Py_ssize_t cap


cdef int _grow(Buf* b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = b.cap
    cdef uint8_t* data
    if b.size + more <= cap:
        return 0
    while cap < b.size + more:
        cap *= 2
    data = <uint8_t*>PyMem_Realloc(b.data, cap)
    if data == NULL:
        raise MemoryError()
    b.data = data
    b.cap = cap
    return 0


cdef inline int _raw(Buf* b, const void* src, Py_ssize_t n) except -1:
    _grow(b, n)
    memcpy(b.data + b.size, src, n)
    b.size += n
    return 0


cdef inline int _byte(Buf* b, uint8_t v) except -1:
    _grow(b, 1)
    b.data[b.size] = v
    b.size += 1
    return 0


cdef inline void _be(uint8_t* p, uint64_t v, int n) noexcept:
    cdef int i
    for i in range(n):
        p[i] = <uint8_t>(v >> (8 * (n - 1 - i)))


cdef inline int _tagged(Buf* b, uint8_t tag, uint64_t v, int n) except -1:
    """A one-byte type tag and ``v`` in ``n`` big-endian bytes (MessagePack's sized forms)."""
    _grow(b, 1 + n)
    b.data[b.size] = tag
    _be(b.data + b.size + 1, v, n)
    b.size += 1 + n
    return 0


cdef int _int(Buf* b, int64_t v) except -1:
    """An integer in its smallest MessagePack form (as msgspec writes it)."""
    if v >= 0:
        if v < 128:
            return _byte(b, <uint8_t>v)  # positive fixint
        if v < 0x100:
            return _tagged(b, 0xcc, <uint64_t>v, 1)
        if v < 0x10000:
            return _tagged(b, 0xcd, <uint64_t>v, 2)
        if v < 0x100000000:
            return _tagged(b, 0xce, <uint64_t>v, 4)
        return _tagged(b, 0xcf, <uint64_t>v, 8)
    if v >= -32:
        return _byte(b, <uint8_t>(<int>v & 0xff))  # negative fixint
    if v >= -128:
        return _tagged(b, 0xd0, <uint64_t>v, 1)
    if v >= -32768:
        return _tagged(b, 0xd1, <uint64_t>v, 2)
    if v >= -2147483648:
        return _tagged(b, 0xd2, <uint64_t>v, 4)
    return _tagged(b, 0xd3, <uint64_t>v, 8)


cdef int _str_head(Buf* b, Py_ssize_t n) except -1:
    if n < 32:
        return _byte(b, 0xa0 | <uint8_t>n)  # fixstr
    if n < 0x100:
        return _tagged(b, 0xd9, <uint64_t>n, 1)
    if n < 0x10000:
        return _tagged(b, 0xda, <uint64_t>n, 2)
    return _tagged(b, 0xdb, <uint64_t>n, 4)


cdef int _str(Buf* b, str s) except -1:
    cdef Py_ssize_t n
    cdef const char* utf8 = PyUnicode_AsUTF8AndSize(s, &n)
    _str_head(b, n)
    _raw(b, utf8, n)
    return 0


cdef int _array_head(Buf* b, Py_ssize_t n) except -1:
    if n < 16:
        return _byte(b, 0x90 | <uint8_t>n)  # fixarray
    if n < 0x10000:
        return _tagged(b, 0xdc, <uint64_t>n, 2)
    return _tagged(b, 0xdd, <uint64_t>n, 4)


cdef inline int _key(Buf* b, bytes key) except -1:
    return _raw(b, PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))


# the map keys, each a MessagePack fixstr
cdef bytes _K_ID = b"\xa2id"
cdef bytes _K_CONV = b"\xa4conv"
cdef bytes _K_SEQ = b"\xa3seq"
cdef bytes _K_FROM = b"\xa4from"
cdef bytes _K_TO = b"\xa2to"
cdef bytes _K_CMID = b"\xa4cmid"
cdef bytes _K_TYPE = b"\xa4type"
cdef bytes _K_CONTENT = b"\xa7content"
cdef bytes _K_TS = b"\xa2ts"
cdef bytes _K_MENTIONS = b"\xa8mentions"
cdef bytes _K_MENTION_ALL = b"\xabmention_all"
cdef bytes _K_RECALLED_BY = b"\xabrecalled_by"
cdef bytes _K_RECALLED_AT = b"\xabrecalled_at"
cdef bytes _K_MSG_ID = b"\xa6msg_id"
cdef bytes _K_REPLY = b"\xa5reply"
cdef bytes _K_EDITED_AT = b"\xa9edited_at"
cdef bytes _K_REV = b"\xa3rev"
cdef bytes _K_SNIPPET = b"\xa7snippet"
cdef bytes _K_RECALLED = b"\xa8recalled"
cdef bytes _K_FORWARDED_FROM = b"\xaeforwarded_from"


cdef bytes _frame(Buf* b, uint8_t op, uint32_t req_id, uint64_t target, uint16_t flags):
    """The frame of the body in ``b`` (written from offset _HEADER): the header goes in
    front of it, then one copy into the result."""
    cdef Py_ssize_t size = b.size - _HEADER
    cdef bytes out
    cdef uint8_t* dst
    if size > _max_body:
        raise FrameError(f"body of {size} bytes exceeds {_max_body}", _FRAME_TOO_LARGE)
    dst = b.data
    dst[0] = _version
    dst[1] = op
    _store_u16(dst + 2, flags)
    _store_u32(dst + 4, req_id)
    _store_u64(dst + 8, target)
    _store_u32(dst + 16, <uint32_t>size)
    out = PyBytes_FromStringAndSize(<char*>b.data, b.size)
    return out


cdef int _open(Buf* b, Py_ssize_t cap) except -1:
    b.data = <uint8_t*>PyMem_Malloc(cap)
    if b.data == NULL:
        raise MemoryError()
    b.cap = cap
    b.size = _HEADER
    return 0


cpdef bytes ack_frame(object req_id, object m):
    """The SEND_ACK of request ``req_id`` for the stored message ``m``."""
    cdef Buf b
    _open(&b, 256)
    try:
        _byte(&b, 0x85)
        _key(&b, _K_CMID)
        _str(&b, m.cmid)
        _key(&b, _K_MSG_ID)
        _int(&b, m.id)
        _key(&b, _K_CONV)
        _str(&b, m.conv)
        _key(&b, _K_SEQ)
        _int(&b, m.seq)
        _key(&b, _K_TS)
        _int(&b, m.ts)
        return _frame(&b, _SEND_ACK, req_id, 0, 0)
    finally:
        PyMem_Free(b.data)


cpdef bytes message_frame(object op, object m):
    """A push of ``m`` (MSG_PUSH, RECALL_PUSH): target its receiver or group, flag GROUP
    for a group's conversation. FRAME_TOO_LARGE if it cannot fit a frame."""
    cdef Buf b
    cdef str conv = m.conv
    cdef str text = m.content
    cdef str mentions = m.mentions
    cdef int64_t recalled_by = m.recalled_by
    cdef int64_t recalled_at = m.recalled_at
    cdef int64_t reply_to = m.reply_to
    cdef int64_t edited_at = m.edited_at
    cdef int64_t rev = m.rev
    cdef object quote = None
    cdef int64_t fwd = m.fwd
    cdef int type_ = m.type
    cdef int keys = 9
    cdef bint everyone = False
    cdef list mentioned = None
    cdef object value
    cdef bytes packed
    if mentions:
        if mentions == "*":
            everyone = True
            keys += 1
        else:
            mentioned = mentions.split(",")
            keys += 1
    if recalled_by:
        keys += 1
    if recalled_at:
        keys += 1
    if reply_to:  # a reply (rare): the quote, resolved or its id alone
        quote = m.quote
        keys += 1
    if edited_at:
        keys += 1
    if rev:  # changed in place (an edit, reactions, a recall): its change revision
        keys += 1
    if fwd:  # a forward's copy
        keys += 1
    _open(&b, 160 + len(text) * 4 + (len(quote.snippet) * 4 if quote is not None else 0))
    try:
        if _MESSAGE_MAP16:
            _tagged(&b, 0xde, <uint64_t>keys, 2)
        else:
            _byte(&b, 0x80 | keys)
        _key(&b, _K_ID)
        _int(&b, m.id)
        _key(&b, _K_CONV)
        _str(&b, conv)
        _key(&b, _K_SEQ)
        _int(&b, m.seq)
        _key(&b, _K_FROM)
        _int(&b, m.sender)
        _key(&b, _K_TO)
        _int(&b, m.to)
        _key(&b, _K_CMID)
        _str(&b, m.cmid)
        _key(&b, _K_TYPE)
        _int(&b, type_)
        _key(&b, _K_CONTENT)
        if type_ == _TEXT or not text:
            _str(&b, text)
        else:
            value = _wire(type_, text)
            if type(value) is str:
                _str(&b, <str>value)
            else:
                packed = _encode(value)
                _raw(&b, PyBytes_AS_STRING(packed), PyBytes_GET_SIZE(packed))
        _key(&b, _K_TS)
        _int(&b, m.ts)
        if mentioned is not None:
            _key(&b, _K_MENTIONS)
            _array_head(&b, len(mentioned))
            for user in mentioned:
                _int(&b, int(user))
        elif everyone:
            _key(&b, _K_MENTION_ALL)
            _byte(&b, 0xc3)
        if recalled_by:
            _key(&b, _K_RECALLED_BY)
            _int(&b, recalled_by)
        if recalled_at:
            _key(&b, _K_RECALLED_AT)
            _int(&b, recalled_at)
        if reply_to:
            _key(&b, _K_REPLY)
            _byte(&b, 0x86)
            _key(&b, _K_ID)
            if quote is not None:
                _int(&b, quote.id)
                _key(&b, _K_SEQ)
                _int(&b, quote.seq)
                _key(&b, _K_FROM)
                _int(&b, quote.sender)
                _key(&b, _K_TYPE)
                _int(&b, quote.type)
                _key(&b, _K_SNIPPET)
                _str(&b, quote.snippet)
                _key(&b, _K_RECALLED)
                _byte(&b, 0xc3 if quote.recalled else 0xc2)
            else:
                _int(&b, reply_to)
                _key(&b, _K_SEQ)
                _byte(&b, 0)
                _key(&b, _K_FROM)
                _byte(&b, 0)
                _key(&b, _K_TYPE)
                _byte(&b, 0)
                _key(&b, _K_SNIPPET)
                _byte(&b, 0xa0)
                _key(&b, _K_RECALLED)
                _byte(&b, 0xc2)
        if edited_at:
            _key(&b, _K_EDITED_AT)
            _int(&b, edited_at)
        if rev:
            _key(&b, _K_REV)
            _int(&b, rev)
        if fwd:
            _key(&b, _K_FORWARDED_FROM)
            _int(&b, fwd)
        return _frame(&b, op, 0, m.to, _GROUP if conv.startswith("g") else 0)
    finally:
        PyMem_Free(b.data)


cpdef Py_ssize_t settle_sends(list outcomes, object committed, object push, object failed, list timed) except -1:
    """The after-commit loop of a batch of messages, in commit order: see the twin
    (frames_py.settle_sends) for the contract. Returns how many SENDs were acked."""
    cdef Py_ssize_t acked = 0
    cdef tuple item, pending
    cdef object ticket, stored, origin
    for entry in outcomes:
        item = <tuple>entry
        ticket = item[0]
        stored = item[1]
        if ticket is not None:
            pending = <tuple>ticket
            origin = pending[0]
            origin.in_flight -= 1
            if pending[2]:
                timed.append(pending[2])
            if stored is None:
                origin.fail(_SEND, pending[1], item[2])
                continue
            origin.send_frame(ack_frame(pending[1], stored))
            acked += 1
            if stored.duplicate:  # a retry's original was pushed already (or is synced)
                continue
        elif stored is None or stored.duplicate:
            continue
        else:  # written by the server
            origin = None
        try:
            committed(stored)
        except Exception as exc:
            failed(stored, exc, False)
        try:
            push(stored, origin)
        except Exception as exc:
            failed(stored, exc, True)
    return acked
