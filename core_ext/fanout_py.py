"""Pure-Python twin of ``_fanout.pyx``: the reference the compiled fanout is tested against.

Both send the same ``bytes`` object to every live transport (DESIGN invariant 4) and
return how many they sent to (tests/core_ext/test_fanout.py runs one suite on both).
"""
from __future__ import annotations

from collections.abc import Iterable

from picows import WSMsgType, WSTransport

__all__ = ["send_all"]

_BINARY = WSMsgType.BINARY


def send_all(transports: Iterable[WSTransport], frame: bytes) -> int:
    """Send ``frame`` as one BINARY message to every transport of ``transports`` and
    return how many it was sent to.

    Transports that are disconnected or have already sent their CLOSE frame are skipped
    (picows would drop the write anyway; skipping keeps the count honest). ``frame`` is
    not copied or modified here. Must run on the event loop thread that owns the
    transports; an error from one ``send`` propagates and the rest are not sent to.
    """
    # The same type checks as the compiled twin, so both refuse the same input.
    if type(frame) is not bytes:
        raise TypeError(f"frame must be bytes, not {type(frame).__name__}")
    sent = 0
    for transport in transports:
        if not isinstance(transport, WSTransport):
            raise TypeError(f"expected a picows WSTransport, not {type(transport).__name__}")
        if transport.is_disconnected or transport.is_close_frame_sent:
            continue
        transport.send(_BINARY, frame)
        sent += 1
    return sent
