"""One suite for both codecs: the pure-Python twin (the reference) and the compiled ``_codec``.

Frames are built here with ``struct`` from protocol.py's HEADER_FORMAT, independently of either
implementation, so a bug shared by both still fails.
"""
from __future__ import annotations

import importlib.machinery
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from picows import WSMsgType
from picows.picows import _make_test_ws_frame

from edgeim.core_ext import _codec, codec_py  # the compiled codec must be built: no skip
from edgeim.core_ext.errors import FrameError
from edgeim.core_ext.protocol import (
    HEADER_FORMAT,
    HEADER_SIZE,
    KNOWN_FLAGS,
    MAX_BODY_SIZE,
    REQUEST_OPS,
    SUPPORTED_VERSIONS,
    VERSION,
    ErrorCode,
    Op,
)

IMPLEMENTATIONS = [codec_py, _codec]

U8 = st.integers(0, 0xFF)
U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
U64 = st.integers(0, 0xFFFFFFFFFFFFFFFF)
OPS = U8
KNOWN_FLAG_VALUES = st.integers(0, KNOWN_FLAGS).map(lambda flags: flags & KNOWN_FLAGS)
BODIES = st.binary(max_size=MAX_BODY_SIZE)


@pytest.fixture(scope="module", params=IMPLEMENTATIONS, ids=["python", "cython"])
def codec(request):
    return request.param


def header(version=VERSION, op=Op.PING, flags=0, req_id=0, target=0, body_len=0) -> bytes:
    return struct.pack(HEADER_FORMAT, version, op, flags, req_id, target, body_len)


def frame(op=Op.PING, flags=0, req_id=0, target=0, body=b"", *, version=VERSION, body_len=None) -> bytes:
    return header(version, op, flags, req_id, target, len(body) if body_len is None else body_len) + body


def outcome(function, data):
    """What one call observably does: its result (body as bytes) or its FrameError."""
    try:
        op, flags, req_id, target, body = function(data)
    except FrameError as err:
        return ("error", err.code, err.req_id)
    assert type(body) is memoryview
    return ("ok", op, flags, req_id, target, bytes(body))


def raises_frame_error(function, data, code, req_id):
    with pytest.raises(FrameError) as info:
        function(data)
    assert info.value.code == code
    assert info.value.req_id == req_id


def test_compiled_codec_is_an_extension_module():
    assert _codec.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


# --- well-formed frames --------------------------------------------------------------------


@given(op=OPS, flags=KNOWN_FLAG_VALUES, req_id=U32, target=U64, body=BODIES)
@example(op=Op.SEND, flags=KNOWN_FLAGS, req_id=0xFFFFFFFF, target=0xFFFFFFFFFFFFFFFF, body=b"\xff" * MAX_BODY_SIZE)
@example(op=0, flags=0, req_id=0, target=0, body=b"")
def test_round_trip(codec, op, flags, req_id, target, body):
    data = codec.encode_frame(op, req_id, target, body, flags)

    assert type(data) is bytes
    assert data == frame(op, flags, req_id, target, body)
    assert outcome(codec.decode_frame, data) == ("ok", op, flags, req_id, target, body)
    if op in REQUEST_OPS:
        assert outcome(codec.decode_request, data) == ("ok", op, flags, req_id, target, body)
    else:
        raises_frame_error(codec.decode_request, data, ErrorCode.UNKNOWN_OP, req_id)


@given(op=OPS, flags=KNOWN_FLAG_VALUES, req_id=U32, target=U64, body=BODIES)
def test_implementations_encode_identical_bytes(op, flags, req_id, target, body):
    assert codec_py.encode_frame(op, req_id, target, body, flags) == _codec.encode_frame(op, req_id, target, body, flags)


def headers_then_bytes():
    """Frames whose header fields are anything, followed by anything: reaches every check.
    Each field is often valid (a true body_len, a request op) so later checks are reached."""
    return st.builds(
        lambda version, op, flags, req_id, target, body_len, body: frame(
            op, flags, req_id, target, body, version=version, body_len=body_len
        ),
        st.one_of(st.sampled_from(SUPPORTED_VERSIONS), U8),
        st.one_of(st.sampled_from(sorted(REQUEST_OPS)), OPS),
        st.one_of(KNOWN_FLAG_VALUES, U16),
        U32,
        U64,
        st.one_of(st.none(), st.integers(0, 64), st.integers(0, MAX_BODY_SIZE + 2), U32),
        st.binary(max_size=64),
    )


@given(data=st.one_of(st.binary(max_size=200), headers_then_bytes(), st.binary(max_size=19)))
def test_implementations_decode_identically(data):
    for function in ("decode_frame", "decode_request"):
        expected = outcome(getattr(codec_py, function), data)
        assert outcome(getattr(_codec, function), data) == expected


# --- malformed frames ----------------------------------------------------------------------


@given(data=st.binary(max_size=HEADER_SIZE - 1))
def test_truncated_header_is_bad_frame(codec, data):
    raises_frame_error(codec.decode_frame, data, ErrorCode.BAD_FRAME, 0)
    raises_frame_error(codec.decode_request, data, ErrorCode.BAD_FRAME, 0)


@pytest.mark.parametrize("size", range(HEADER_SIZE))
def test_every_prefix_of_a_header_is_bad_frame(codec, size):
    data = frame(Op.SEND, req_id=7, target=9, body=b"abc")[:size]
    raises_frame_error(codec.decode_request, data, ErrorCode.BAD_FRAME, 0)


@given(version=U8.filter(lambda v: v not in SUPPORTED_VERSIONS), req_id=U32, body=st.binary(max_size=64))
def test_bad_version(codec, version, req_id, body):
    data = frame(Op.PING, req_id=req_id, body=body, version=version)
    raises_frame_error(codec.decode_frame, data, ErrorCode.BAD_VERSION, req_id)


@given(op=OPS.filter(lambda op: op not in REQUEST_OPS), req_id=U32, body=st.binary(max_size=64))
def test_unknown_op_is_refused_by_decode_request_only(codec, op, req_id, body):
    data = frame(op, req_id=req_id, body=body)
    raises_frame_error(codec.decode_request, data, ErrorCode.UNKNOWN_OP, req_id)
    assert outcome(codec.decode_frame, data) == ("ok", op, 0, req_id, 0, body)


@given(req_id=U32, body=st.binary(max_size=256), extra=st.integers(1, MAX_BODY_SIZE))
def test_body_len_larger_than_what_follows(codec, req_id, body, extra):
    body_len = min(len(body) + extra, MAX_BODY_SIZE)
    if body_len == len(body):
        body = body[:-1]
    data = frame(Op.SEND, req_id=req_id, body=body, body_len=body_len)
    raises_frame_error(codec.decode_request, data, ErrorCode.BAD_FRAME, req_id)


@given(req_id=U32, body=st.binary(min_size=1, max_size=256), data=st.data())
def test_body_len_smaller_than_what_follows(codec, req_id, body, data):
    body_len = data.draw(st.integers(0, len(body) - 1))
    raises_frame_error(codec.decode_request, frame(Op.SEND, req_id=req_id, body=body, body_len=body_len),
                       ErrorCode.BAD_FRAME, req_id)


@given(req_id=U32, body_len=st.integers(MAX_BODY_SIZE + 1, 0xFFFFFFFF), body=st.binary(max_size=64))
@example(req_id=1, body_len=MAX_BODY_SIZE + 1, body=b"")
def test_oversized_body_len_is_frame_too_large(codec, req_id, body_len, body):
    raises_frame_error(codec.decode_request, frame(Op.SEND, req_id=req_id, body=body, body_len=body_len),
                       ErrorCode.FRAME_TOO_LARGE, req_id)


def test_oversized_body_len_is_frame_too_large_even_when_it_is_true(codec):
    data = frame(Op.SEND, req_id=3, body=bytes(MAX_BODY_SIZE + 1))
    raises_frame_error(codec.decode_request, data, ErrorCode.FRAME_TOO_LARGE, 3)


@given(flags=U16.filter(lambda flags: flags & ~KNOWN_FLAGS), req_id=U32, body=st.binary(max_size=64))
def test_unknown_flag_bits_are_bad_flags(codec, flags, req_id, body):
    raises_frame_error(codec.decode_request, frame(Op.SEND, flags, req_id, body=body), ErrorCode.BAD_FLAGS, req_id)


@pytest.mark.parametrize("size", [MAX_BODY_SIZE + 1, 4 * MAX_BODY_SIZE])
def test_encode_too_large_body_is_frame_too_large(codec, size):
    with pytest.raises(FrameError) as info:
        codec.encode_frame(Op.MSG_PUSH, 0, 1, bytes(size))
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


def test_encode_too_large_body_wins_over_out_of_range_fields(codec):
    with pytest.raises(FrameError) as info:
        codec.encode_frame(-1, 2**32, 2**64, bytes(MAX_BODY_SIZE + 1), -1)
    assert info.value.code == ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize(
    "field, value",
    [("op", -1), ("op", 0x100), ("flags", -1), ("flags", 0x10000), ("req_id", -1), ("req_id", 2**32),
     ("target", -1), ("target", 2**64), ("target", 2**200)],
)
def test_encode_out_of_range_field_is_overflow_error(codec, field, value):
    fields = {"op": Op.PING, "req_id": 1, "target": 2, "body": b"x", "flags": 0, field: value}
    with pytest.raises(OverflowError):
        codec.encode_frame(**fields)


def test_encode_accepts_boundary_field_values(codec):
    data = codec.encode_frame(0xFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF, b"", 0xFFFF)
    assert data == frame(0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF)


# --- buffer types --------------------------------------------------------------------------

SEND = frame(Op.SEND, 1, 42, 1000, b"\x81\xa4text\xa2hi")


@pytest.mark.parametrize(
    "make",
    [
        bytes,
        bytearray,
        memoryview,
        lambda data: memoryview(bytearray(data)),
        lambda data: memoryview(b"\0\0\0" + data)[3:],
        lambda data: _make_test_ws_frame(WSMsgType.BINARY, data, True, False).get_payload_as_memoryview(),
    ],
    ids=["bytes", "bytearray", "memoryview", "writable-memoryview", "offset-memoryview", "picows-payload"],
)
def test_decode_accepts_buffers(codec, make):
    assert outcome(codec.decode_request, make(SEND)) == ("ok", Op.SEND, 1, 42, 1000, b"\x81\xa4text\xa2hi")


def test_decode_casts_multibyte_formats_to_bytes(codec):
    data = frame(Op.PING, body=b"abcd")  # 24 bytes: a whole number of 4-byte items
    assert outcome(codec.decode_request, memoryview(data).cast("I")) == ("ok", Op.PING, 0, 0, 0, b"abcd")


def test_decode_body_borrows_the_input(codec):
    data = bytearray(SEND)
    body = codec.decode_frame(data)[4]
    data[-1] = ord("!")
    assert bytes(body).endswith(b"!")
    body.release()


def test_decode_refuses_strided_views_like_the_twin(codec):
    with pytest.raises(BufferError):
        codec.decode_frame(memoryview(SEND + SEND)[::2])


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview, lambda body: memoryview(b"--" + body)[2:]],
                         ids=["bytes", "bytearray", "memoryview", "offset-memoryview"])
def test_encode_accepts_buffers(codec, make):
    assert codec.encode_frame(Op.SEND, 1, 42, make(b"\x80"), 1) == frame(Op.SEND, 1, 1, 42, b"\x80")


# --- selector ------------------------------------------------------------------------------


@pytest.mark.parametrize("no_ext, expected", [(None, "cython"), ("0", "cython"), ("1", "python")])
def test_selector_honours_edgeim_no_ext(no_ext, expected):
    env = {key: value for key, value in os.environ.items() if key != "EDGEIM_NO_EXT"}
    if no_ext is not None:
        env["EDGEIM_NO_EXT"] = no_ext
    code = "from edgeim.core_ext import codec; print(codec.IMPLEMENTATION, codec.encode_frame.__module__)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    module = {"cython": "edgeim.core_ext._codec", "python": "edgeim.core_ext.codec_py"}[expected]
    assert result.stdout.split() == [expected, module]
