"""Pure-Python twin of ``_codec.pyx``: the reference the compiled codec is tested against.

Both implementations expose the same three functions and raise the same ``FrameError``
codes for the same input (tests/core_ext/test_codec.py runs one suite on both).
"""
from __future__ import annotations

import struct

from .errors import FrameError
from .protocol import (
    HEADER_FORMAT,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAX_BODY_SIZE,
    REQUEST_OPS,
    SUPPORTED_VERSIONS,
    VERSION,
    ErrorCode,
)

__all__ = ["encode_frame", "decode_frame", "decode_request"]

_header = struct.Struct(HEADER_FORMAT)
_pack_into = _header.pack_into
_unpack_from = _header.unpack_from


def encode_frame(op: int, req_id: int, target: int, body: bytes, flags: int = 0) -> bytes:
    """Header + body as one ``bytes``. Raises FrameError(FRAME_TOO_LARGE) for a body above
    MAX_BODY_SIZE, ``OverflowError``/``struct.error`` for out-of-range header fields."""
    size = memoryview(body).nbytes
    if size > MAX_BODY_SIZE:
        raise FrameError(f"body of {size} bytes exceeds {MAX_BODY_SIZE}", ErrorCode.FRAME_TOO_LARGE)
    if not (0 <= op <= 0xFF and 0 <= flags <= 0xFFFF and 0 <= req_id <= 0xFFFFFFFF and 0 <= target <= 0xFFFFFFFFFFFFFFFF):
        raise OverflowError("header field out of range")
    out = bytearray(HEADER_SIZE + size)
    _pack_into(out, 0, VERSION, op, flags, req_id, target, size)
    out[HEADER_SIZE:] = body
    return bytes(out)


def decode_frame(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int, memoryview]:
    """Parse one frame: ``(op, flags, req_id, target, body)``.

    ``body`` is a memoryview into ``data``: it borrows ``data`` and is valid as long as
    ``data`` is (for a picows payload view: only inside ``on_ws_frame``). Raises
    ``FrameError`` with BAD_FRAME, BAD_VERSION, FRAME_TOO_LARGE or BAD_FLAGS; its
    ``req_id`` attribute holds the request id when the header was complete, else 0.
    """
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1:
        view = view.cast("B")
    size = len(view)
    if size < HEADER_SIZE:
        raise _error(f"frame of {size} bytes is shorter than the {HEADER_SIZE}-byte header", ErrorCode.BAD_FRAME, 0)
    version, op, flags, req_id, target, body_len = _unpack_from(view, 0)
    if version not in SUPPORTED_VERSIONS:
        raise _error(f"unsupported protocol version {version}", ErrorCode.BAD_VERSION, req_id)
    if body_len > MAX_BODY_SIZE:
        raise _error(f"body_len {body_len} exceeds {MAX_BODY_SIZE}", ErrorCode.FRAME_TOO_LARGE, req_id)
    if body_len != size - HEADER_SIZE:
        raise _error(f"body_len {body_len} but {size - HEADER_SIZE} bytes follow the header", ErrorCode.BAD_FRAME, req_id)
    if flags & ~KNOWN_FLAGS:
        raise _error(f"unknown flags 0x{flags:04x}", ErrorCode.BAD_FLAGS, req_id)
    return op, flags, req_id, target, view[HEADER_SIZE:]


def decode_request(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int, memoryview]:
    """``decode_frame`` for the server side: also refuses ops that are not requests
    (UNKNOWN_OP)."""
    op, flags, req_id, target, body = decode_frame(data)
    if op not in REQUEST_OPS:
        raise _error(f"unknown request op 0x{op:02x}", ErrorCode.UNKNOWN_OP, req_id)
    return op, flags, req_id, target, body


def _error(message: str, code: ErrorCode, req_id: int) -> FrameError:
    err = FrameError(message, code)
    err.req_id = req_id
    return err
