# cython: language_level=3
"""Compiled fanout writer: the frames queued for one connection during a loop iteration,
written with one call into the socket. Same behaviour as the pure-Python twin
``fanout_py.py``.

A server-to-client WebSocket message is a 2-, 4- or 10-byte header (FIN + BINARY, no
mask) and the payload, so several messages are laid end to end in one buffer and handed
to picows's underlying transport in one write: one syscall instead of one per frame.
picows itself writes straight to the socket only while that transport has nothing
buffered, so its own writes (pongs, close frames) and ours stay in order. picows ships
``picows.pxd``: the transport's fields are read as C struct members.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t
from libc.string cimport memcpy
from picows.picows cimport WSMsgType, WSTransport

__all__ = ["write_frames"]

cdef uint8_t _FIN_BINARY = 0x82


cdef inline Py_ssize_t _header_size(Py_ssize_t size) noexcept:
    if size < 126:
        return 2
    if size < 65536:
        return 4
    return 10


cdef inline Py_ssize_t _put_header(uint8_t* out, Py_ssize_t size) noexcept:
    cdef int i
    out[0] = _FIN_BINARY
    if size < 126:
        out[1] = <uint8_t>size
        return 2
    if size < 65536:
        out[1] = 126
        out[2] = <uint8_t>(size >> 8)
        out[3] = <uint8_t>size
        return 4
    out[1] = 127
    for i in range(8):
        out[2 + i] = <uint8_t>(size >> (8 * (7 - i)))
    return 10


cpdef Py_ssize_t write_frames(WSTransport transport, list frames) except -1:
    """Write ``frames`` (a list of ``bytes``, each one protocol frame) to ``transport`` as
    that many BINARY WebSocket messages, in order, with one write. Returns how many were
    written: 0 when the transport is disconnected or has sent its CLOSE frame (picows
    would drop them too). The frames are copied, not kept. Runs on the transport's loop.
    """
    cdef:
        Py_ssize_t count = len(frames), total = 0, offset = 0, size
        bytes frame, buffer
        uint8_t* out
    for item in frames:
        frame = <bytes?>item
        size = PyBytes_GET_SIZE(frame)
        total += _header_size(size) + size
    if transport.is_disconnected or transport.is_close_frame_sent or count == 0:
        return 0
    if count == 1:
        transport.send(WSMsgType.BINARY, frames[0])
        return 1
    buffer = PyBytes_FromStringAndSize(NULL, total)
    out = <uint8_t*>PyBytes_AS_STRING(buffer)
    for item in frames:
        frame = <bytes>item
        size = PyBytes_GET_SIZE(frame)
        offset += _put_header(out + offset, size)
        memcpy(out + offset, PyBytes_AS_STRING(frame), size)
        offset += size
    transport.underlying_transport.write(buffer)
    return count
