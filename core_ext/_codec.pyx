# cython: language_level=3
"""The compiled frame codec. Same API, errors and borrowing rules as its pure-Python twin
``codec_py.py`` (the reference; tests/core_ext/test_codec.py runs one suite on both).

The header is read from and written to the buffer byte by byte in little-endian order: no
``struct`` call, no intermediate objects, and correct on any host byte order (compilers fold
the shifts into single loads and stores on little-endian machines).
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_IsContiguous, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.memoryview cimport PyMemoryView_FromObject, PyMemoryView_GET_BUFFER
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

include "_header.pxi"

from .errors import FrameError
from .protocol import HEADER_SIZE, KNOWN_FLAGS, MAX_BODY_SIZE, REQUEST_OPS, SUPPORTED_VERSIONS, VERSION, ErrorCode

__all__ = ["encode_frame", "decode_frame", "decode_request"]

# The numbers still live only in protocol.py: they are copied into C variables once, at import.
# The layout itself (field offsets, _HEADER in _header.pxi) is fixed by the wire format, hence the check.
if HEADER_SIZE != _HEADER:
    raise ImportError(f"_codec is built for a {_HEADER}-byte header, protocol.py says {HEADER_SIZE}")

cdef uint8_t _version = VERSION
cdef uint32_t _max_body = MAX_BODY_SIZE
cdef uint16_t _unknown_flags = 0xFFFF & ~KNOWN_FLAGS
# Membership tables indexed by the header byte: one load instead of a frozenset lookup.
cdef bint _supported_version[256]
cdef bint _request_op[256]
cdef int _i
for _i in range(256):
    _supported_version[_i] = _i in SUPPORTED_VERSIONS
    _request_op[_i] = _i in REQUEST_OPS

# The codes as C-level references, so the error path does no enum or global lookups.
cdef object _BAD_FRAME = ErrorCode.BAD_FRAME
cdef object _BAD_VERSION = ErrorCode.BAD_VERSION
cdef object _UNKNOWN_OP = ErrorCode.UNKNOWN_OP
cdef object _FRAME_TOO_LARGE = ErrorCode.FRAME_TOO_LARGE
cdef object _BAD_FLAGS = ErrorCode.BAD_FLAGS

# Built once: slicing with a literal would build a slice object per frame.
cdef object _BODY_SLICE = slice(_HEADER, None)


cdef struct Header:
    uint8_t version
    uint8_t op
    uint16_t flags
    uint32_t req_id
    uint64_t target
    uint32_t body_len


cpdef bytes encode_frame(object op, object req_id, object target, object body, object flags=0):
    """Header + body as one ``bytes``. Raises FrameError(FRAME_TOO_LARGE) for a body above
    MAX_BODY_SIZE, ``OverflowError`` for out-of-range header fields."""
    cdef:
        Py_buffer view
        bint has_view = False
        const char* src
        Py_ssize_t size
        uint8_t c_op
        uint16_t c_flags
        uint32_t c_req_id
        uint64_t c_target
        bytes out
        uint8_t* dst

    # bytes is by far the common body (msgspec output): read it without acquiring a buffer.
    if PyBytes_CheckExact(body):
        src = PyBytes_AS_STRING(body)
        size = PyBytes_GET_SIZE(body)
    else:
        PyObject_GetBuffer(body, &view, PyBUF_SIMPLE)
        has_view = True
        src = <const char*>view.buf
        size = view.len
    try:
        # Same order as the twin: the size is checked before the header fields.
        if size > _max_body:
            raise FrameError(f"body of {size} bytes exceeds {_max_body}", _FRAME_TOO_LARGE)
        # The fields are converted only now, so that conversion's OverflowError
        # (negative or too large) cannot mask FRAME_TOO_LARGE.
        c_op = op
        c_flags = flags
        c_req_id = req_id
        c_target = target

        # Allocate the result uninitialised and fill it in place: one allocation, one copy.
        out = PyBytes_FromStringAndSize(NULL, _HEADER + size)
        dst = <uint8_t*>PyBytes_AS_STRING(out)
        dst[0] = _version
        dst[1] = c_op
        _store_u16(dst + 2, c_flags)
        _store_u32(dst + 4, c_req_id)
        _store_u64(dst + 8, c_target)
        _store_u32(dst + 16, <uint32_t>size)
        if size:
            memcpy(dst + _HEADER, src, size)
        return out
    finally:
        if has_view:
            PyBuffer_Release(&view)


cdef object _parse(object data, Header* header):
    """Validate ``data`` as one frame, fill ``header`` and return the body view.

    The view is a memoryview of ``data`` (not a copy), so the body borrows ``data`` exactly
    like the twin's ``view[HEADER_SIZE:]``."""
    cdef:
        object view = PyMemoryView_FromObject(data)
        Py_buffer* buf = PyMemoryView_GET_BUFFER(view)
        Py_ssize_t size
        const uint8_t* p

    if buf.ndim != 1 or buf.itemsize != 1:
        view = view.cast("B")
        buf = PyMemoryView_GET_BUFFER(view)
    size = buf.len
    if size < _HEADER:
        raise _error(f"frame of {size} bytes is shorter than the {_HEADER}-byte header", _BAD_FRAME, 0)
    # A strided view (memoryview(b)[::2]) has no flat header to read; the twin's struct
    # unpack refuses it with this same error.
    if not PyBuffer_IsContiguous(buf, b"C"):
        raise BufferError("memoryview: underlying buffer is not C-contiguous")

    p = <const uint8_t*>buf.buf
    header.version = p[0]
    header.op = p[1]
    header.flags = _load_u16(p + 2)
    header.req_id = _load_u32(p + 4)
    header.target = _load_u64(p + 8)
    header.body_len = _load_u32(p + 16)

    if not _supported_version[header.version]:
        raise _error(f"unsupported protocol version {header.version}", _BAD_VERSION, header.req_id)
    if header.body_len > _max_body:
        raise _error(f"body_len {header.body_len} exceeds {_max_body}", _FRAME_TOO_LARGE, header.req_id)
    if header.body_len != size - _HEADER:
        raise _error(
            f"body_len {header.body_len} but {size - _HEADER} bytes follow the header", _BAD_FRAME, header.req_id
        )
    if header.flags & _unknown_flags:
        raise _error(f"unknown flags 0x{header.flags:04x}", _BAD_FLAGS, header.req_id)
    return view[_BODY_SLICE]


cpdef tuple decode_frame(object data):
    """Parse one frame: ``(op, flags, req_id, target, body)``.

    ``body`` is a memoryview into ``data``: it borrows ``data`` and is valid as long as
    ``data`` is (for a picows payload view: only inside ``on_ws_frame``). Raises
    ``FrameError`` with BAD_FRAME, BAD_VERSION, FRAME_TOO_LARGE or BAD_FLAGS; its
    ``req_id`` attribute holds the request id when the header was complete, else 0.
    """
    cdef Header header
    body = _parse(data, &header)
    return (header.op, header.flags, header.req_id, header.target, body)


cpdef tuple decode_request(object data):
    """``decode_frame`` for the server side: also refuses ops that are not requests
    (UNKNOWN_OP)."""
    cdef Header header
    body = _parse(data, &header)
    if not _request_op[header.op]:
        raise _error(f"unknown request op 0x{header.op:02x}", _UNKNOWN_OP, header.req_id)
    return (header.op, header.flags, header.req_id, header.target, body)


cdef object _error(str message, object code, uint32_t req_id):
    err = FrameError(message, code)
    err.req_id = req_id
    return err
