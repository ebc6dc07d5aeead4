# cython: language_level=3
"""Compiled fanout: one encoded frame, the same ``bytes`` object, written to many picows
transports (DESIGN invariant 4). Same behaviour as the pure-Python twin ``fanout_py.py``.

picows ships ``picows.pxd``, so the transport fields are read as C struct members and
``WSTransport.send`` is called through its C entry point: the loop never goes through
Python attribute lookups or argument tuples.
"""
from picows.picows cimport WSMsgType, WSTransport

__all__ = ["send_all"]


cpdef Py_ssize_t send_all(object transports, bytes frame) except -1:
    """Send ``frame`` as one BINARY message to every transport of ``transports`` (any
    iterable of ``picows.WSTransport``) and return how many it was sent to.

    Transports that are disconnected or have already sent their CLOSE frame are skipped
    (picows would drop the write anyway; skipping keeps the count honest). ``frame`` is
    not copied or modified here. Must run on the event loop thread that owns the
    transports; an error from one ``send`` propagates and the rest are not sent to.
    """
    if frame is None:
        raise TypeError("frame must be bytes, not None")
    cdef:
        Py_ssize_t sent = 0
        WSTransport transport
    for item in transports:
        transport = <WSTransport?>item
        if transport.is_disconnected or transport.is_close_frame_sent:
            continue
        transport.send(WSMsgType.BINARY, frame)
        sent += 1
    return sent
