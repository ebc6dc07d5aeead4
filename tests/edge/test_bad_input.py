"""Bad input over a live socket: each gets its documented error frame or close code,
and the node keeps serving everyone else (invariant 5)."""
from __future__ import annotations

import asyncio
import struct

import msgspec
import pytest
from harness import new_user
from picows import WSMsgType

from edgeim.core_ext import bodies
from edgeim.core_ext.codec_py import encode_frame
from edgeim.core_ext.protocol import HEADER_FORMAT, MAX_FRAME_SIZE, CloseCode, ErrorCode, Op
from edgeim.sdk import Client, ServerError


@pytest.fixture
def server(serve_factory, codec):
    return serve_factory(codec)


@pytest.fixture
async def witness(clients):
    """Two users who must keep chatting whatever the bad client does."""
    a, b = await clients(), await clients()
    await new_user(a)
    _, b_id = await new_user(b)

    async def still_serving() -> None:
        ack = await a.send(b_id, "still here")
        push = await asyncio.wait_for(b.pushes.get(), 5)
        assert push.id == ack.msg_id

    return still_serving


def frame(op: int, req_id: int, body: bytes = b"", target: int = 0, version: int = 1, body_len: int | None = None, flags: int = 0) -> bytes:
    header = struct.pack(HEADER_FORMAT, version, op, flags, req_id, target, len(body) if body_len is None else body_len)
    return header + body


async def error_of(client: Client, data: bytes, req_id: int) -> int:
    op, body = await client.exchange_raw(data, req_id)
    assert op == Op.ERROR
    return bodies.decode(body, bodies.Error).code


async def test_request_before_login_is_refused(clients, witness):
    client = await clients()
    code = await error_of(client, encode_frame(Op.SEND, 5, 1, bodies.encode(bodies.Send(cmid="x", content="hi"))), 5)
    assert code == ErrorCode.NOT_AUTHENTICATED
    assert client.connected
    await witness()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(0x2F, 9), ErrorCode.UNKNOWN_OP),
        (frame(Op.MSG_PUSH, 9), ErrorCode.UNKNOWN_OP),  # a push op is not a request
        (frame(Op.SEND_ACK, 9), ErrorCode.UNKNOWN_OP),
        (frame(Op.PING, 9, version=2), ErrorCode.BAD_VERSION),
        (frame(Op.PING, 9, b"\x80", body_len=5), ErrorCode.BAD_FRAME),  # length says more than follows
        (frame(Op.PING, 9, b"\x80\x80", body_len=1), ErrorCode.BAD_FRAME),  # and less
        (frame(Op.PING, 9, flags=0x8000), ErrorCode.BAD_FLAGS),
        (frame(Op.SYNC, 9, b"\xc1\xc1"), ErrorCode.BAD_BODY),  # not MessagePack
        (frame(Op.SYNC, 9, msgspec.msgpack.encode({"conv": 12})), ErrorCode.BAD_BODY),  # wrong type
        (frame(Op.SYNC, 9, msgspec.msgpack.encode({"conv": "p1_2", "limit": 10_000})), ErrorCode.BAD_BODY),
        (frame(Op.SEND, 9, msgspec.msgpack.encode([1, 2, 3]), target=2), ErrorCode.BAD_BODY),
        (frame(Op.SYNC, 9, msgspec.msgpack.encode({"conv": "p1_2", "after_seq": 2**63})), ErrorCode.BAD_BODY),
        (frame(Op.SEND, 9, msgspec.msgpack.encode({"cmid": "c", "content": "x"}), target=2**64 - 1), ErrorCode.USER_NOT_FOUND),
        (frame(Op.SYNC, 9, bytes.fromhex("81a4636f6e76a470fffe32")), ErrorCode.BAD_BODY),  # str of invalid UTF-8
        (frame(Op.SYNC, 9, b"\x82\xa1z" + b"\x91" * 1000 + b"\x00\xa4conv\xa4p1_2"), ErrorCode.BAD_BODY),  # 1,000 deep
    ],
    ids=["unknown-op", "push-op", "reply-op", "bad-version", "length-too-long", "length-too-short",
         "unknown-flags", "not-msgpack", "wrong-type", "limit-out-of-range", "array-body", "seq-above-int64",
         "target-above-int64", "invalid-utf8", "nested-1000-deep"],
)
async def test_malformed_frame_gets_its_error_code(clients, witness, data, code):
    client = await clients()
    await new_user(client)
    assert await error_of(client, data, 9) == code
    await client.ping()  # the connection still works
    await witness()


async def test_truncated_header_and_text_messages_get_bad_frame(clients, witness):
    client = await clients()
    await new_user(client)
    client.send_raw(b"\x01\x01\x00")
    client.send_raw("hello", WSMsgType.TEXT)
    errors = [await asyncio.wait_for(client.errors.get(), 5) for _ in range(2)]
    assert [e.code for e in errors] == [ErrorCode.BAD_FRAME, ErrorCode.BAD_FRAME]
    await client.ping()
    await witness()


async def test_send_to_user_that_does_not_exist(clients, witness):
    client = await clients()
    await new_user(client)
    data = encode_frame(Op.SEND, 3, 987654321, bodies.encode(bodies.Send(cmid="c", content="hello?")))
    assert await error_of(client, data, 3) == ErrorCode.USER_NOT_FOUND
    await witness()


async def test_oversized_message_closes_1009(clients, witness):
    client = await clients()
    await new_user(client)
    client.send_raw(frame(Op.PING, 1) + b"\0" * MAX_FRAME_SIZE)
    assert await asyncio.wait_for(client.wait_closed(), 5) == CloseCode.MESSAGE_TOO_BIG
    await witness()


async def test_many_malformed_frames_close_4008(clients, witness):
    client = await clients()
    for n in range(1, 60):
        client.send_raw(frame(0x2F, n))
    assert await asyncio.wait_for(client.wait_closed(), 5) == CloseCode.POLICY
    await witness()


async def test_flood_is_rate_limited_then_closed(clients, witness):
    client = await clients()
    await new_user(client)
    replies: dict[int, asyncio.Future] = {}
    loop = asyncio.get_running_loop()
    for n in range(1, 1501):
        replies[n] = loop.create_future()
        client._waiting[n] = replies[n]
        client.send_raw(frame(Op.PING, n))
    assert await asyncio.wait_for(client.wait_closed(), 10) == CloseCode.POLICY
    answered = [f.result() for f in replies.values() if f.done() and not f.exception()]
    pongs = [op for op, _ in answered if op == Op.PONG]
    limited = [bodies.decode(body, bodies.Error).code for op, body in answered if op == Op.ERROR]
    assert pongs  # the burst was served
    assert limited and set(limited) == {ErrorCode.RATE_LIMITED}
    await witness()


@pytest.mark.parametrize(
    "body",
    [
        b"\x83\xa8username\xa3a\xff\xfe\xa8password\xa9secret-pw\xa8terminal\xa3web",  # username: invalid UTF-8
        msgspec.msgpack.encode({"username": "alice\n", "password": "secret-pw", "terminal": "web"}),
        msgspec.msgpack.encode({"username": "alice", "password": "secret-pw", "terminal": "web\n"}),
    ],
    ids=["invalid-utf8", "username-trailing-newline", "terminal-trailing-newline"],
)
async def test_bad_login_bodies_before_login_get_bad_body(clients, witness, body):
    client = await clients()
    assert await error_of(client, frame(Op.LOGIN, 4, body), 4) == ErrorCode.BAD_BODY
    await client.ping()  # still open, still anonymous
    assert await error_of(client, frame(Op.SYNC, 5, msgspec.msgpack.encode({"conv": "p1_2"})), 5) == ErrorCode.NOT_AUTHENTICATED
    await witness()


async def test_a_trailing_newline_does_not_register_a_second_alice(clients):
    client = await clients()
    await client.register("alice", "secret-pw")
    data = frame(Op.REGISTER, 6, msgspec.msgpack.encode({"username": "alice\n", "password": "secret-pw"}))
    assert await error_of(client, data, 6) == ErrorCode.BAD_BODY
    with pytest.raises(ServerError) as err:
        await client.register("alice", "other-pw")
    assert err.value.code == ErrorCode.USERNAME_TAKEN
