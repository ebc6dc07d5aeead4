"""Pure-Python twin of ``_fanout.pyx``: the reference the compiled writer is tested against
(tests/core_ext/test_fanout.py runs one suite on both)."""
from __future__ import annotations

import struct

from picows import WSMsgType, WSTransport

__all__ = ["write_frames"]

_BINARY = WSMsgType.BINARY
_FIN_BINARY = 0x82


def _header(size: int) -> bytes:
    if size < 126:
        return bytes((_FIN_BINARY, size))
    if size < 65536:
        return struct.pack("!BBH", _FIN_BINARY, 126, size)
    return struct.pack("!BBQ", _FIN_BINARY, 127, size)


def write_frames(transport: WSTransport, frames: list[bytes]) -> int:
    """Write ``frames`` to ``transport`` as that many BINARY WebSocket messages, in order,
    with one write; returns how many were written (0 once the transport is closing)."""
    if not isinstance(transport, WSTransport):
        raise TypeError(f"expected a picows WSTransport, not {type(transport).__name__}")
    if type(frames) is not list:
        raise TypeError(f"frames must be a list, not {type(frames).__name__}")
    for frame in frames:
        if type(frame) is not bytes:
            raise TypeError(f"frames must hold bytes, not {type(frame).__name__}")
    if transport.is_disconnected or transport.is_close_frame_sent or not frames:
        return 0
    if len(frames) == 1:
        transport.send(_BINARY, frames[0])
        return 1
    transport.underlying_transport.write(b"".join(part for frame in frames for part in (_header(len(frame)), frame)))
    return len(frames)
