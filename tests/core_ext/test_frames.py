"""The frames of a stored message: the compiled ``_frames`` gives the same bytes as its
twin ``frames_py`` (which goes through msgspec and the codec), and those bytes decode
back to the message."""
from __future__ import annotations

import struct

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edgeim.backends.protocols import ConvId, Quote, StoredMessage, UserId
from edgeim.core_ext import _frames, bodies, content, frames_py  # the compiled module must be built: no skip
from edgeim.core_ext.codec_py import decode_frame
from edgeim.core_ext.errors import FrameError
from edgeim.core_ext.protocol import HEADER_SIZE, MAX_BODY_SIZE, ErrorCode, Flag, Op

IMPLEMENTATIONS = [frames_py, _frames]
ID = st.integers(0, 2**63 - 1)
TEXT = st.text(max_size=300)


@st.composite
def stored(draw: st.DrawFn) -> StoredMessage:
    group = draw(st.booleans())
    to = draw(ID)
    conv = f"g{to}" if group else f"p{draw(st.integers(1, 2**63 - 1))}_{draw(st.integers(1, 2**63 - 1))}"
    type_ = draw(st.sampled_from([content.TEXT, content.IMAGE, content.LOCATION, 100, 255]))
    if type_ == content.TEXT:
        text = draw(TEXT)
    else:
        text = draw(st.one_of(
            st.just(""),
            TEXT,  # an older node's string content: passed on as is
            st.dictionaries(st.text(max_size=8), st.one_of(st.integers(-2**63, 2**64 - 1), TEXT, st.booleans()),
                            max_size=4).map(lambda d: content.stored(100, d)),
        ))
    mentions = draw(st.one_of(st.just(""), st.just("*"),
                              st.lists(st.integers(1, 2**63 - 1), min_size=1, max_size=20).map(
                                  lambda us: ",".join(map(str, us)))))
    reply_to = draw(st.one_of(st.just(0), ID))
    quote = None
    if reply_to and draw(st.booleans()):  # resolved (a new reply's push), or the id alone
        quote = Quote(reply_to, draw(ID), draw(ID), draw(st.integers(0, 255)), draw(TEXT), draw(st.booleans()))
    # a forward's mark: none, the original sender, or hidden (-1); reactions never go in a push
    fwd = draw(st.one_of(st.just(0), st.just(-1), ID))
    reactions = draw(st.one_of(st.just(""), st.just('[["\U0001f44d",3,[1,2,3]]]')))
    return StoredMessage(draw(ID), ConvId(conv), draw(ID), UserId(draw(ID)), to, draw(st.text(max_size=64)), type_,
                         text, draw(ID), mentions, draw(st.one_of(st.just(0), ID)), draw(st.one_of(st.just(0), ID)),
                         reply_to=reply_to, edited_at=draw(st.one_of(st.just(0), ID)),
                         quote=quote, fwd=fwd, reactions=reactions,
                         rev=draw(st.one_of(st.integers(0, 5), ID)))


@given(stored(), st.integers(0, 0xFFFFFFFF))
@example(StoredMessage(1, ConvId("p1_2"), 1, UserId(1), 2, "c", 1, "hi", 0), 7)
@example(StoredMessage(2**63 - 1, ConvId("g9"), 128, UserId(65536), 9, "x" * 40, 1, "é" * 200, 2**32, "*"), 0)
@example(StoredMessage(5, ConvId("g9"), 3, UserId(1), 9, "r", 1, "re", 7, reply_to=4, edited_at=8,
                       quote=Quote(4, 2, 2, 1, "é" * 100, False)), 0)
@example(StoredMessage(5, ConvId("p1_2"), 3, UserId(1), 2, "r", 1, "re", 7, reply_to=2**40), 0)
def test_compiled_frames_equal_the_twins(m: StoredMessage, req_id: int) -> None:
    assert _frames.ack_frame(req_id, m) == frames_py.ack_frame(req_id, m)
    for op in (Op.MSG_PUSH, Op.RECALL_PUSH, Op.EDIT_PUSH):
        assert _frames.message_frame(op, m) == frames_py.message_frame(op, m)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=["python", "cython"])
@given(m=stored())
def test_a_push_decodes_back_to_its_message(impl, m: StoredMessage) -> None:
    frame = impl.message_frame(Op.MSG_PUSH, m)
    op, flags, req_id, target, body = decode_frame(frame)
    assert (op, req_id, target) == (Op.MSG_PUSH, 0, m.to)
    assert flags == (Flag.GROUP if m.conv.startswith("g") else 0)
    got = bodies.decode(body, bodies.Message)
    assert (got.id, got.conv, got.seq, got.sender, got.to, got.cmid, got.type, got.ts) == (
        m.id, m.conv, m.seq, m.sender, m.to, m.cmid, m.type, m.ts)
    assert content.stored(got.type, got.content) == m.content or not isinstance(got.content, str)
    assert got.mention_all == (m.mentions == "*")
    assert got.mentions == ([int(u) for u in m.mentions.split(",")] if m.mentions not in ("", "*") else [])
    assert (got.recalled_by, got.recalled_at) == (m.recalled_by, m.recalled_at)
    assert (got.edited_at, got.rev) == (m.edited_at, m.rev)
    if not m.reply_to:
        assert got.reply is None
    elif m.quote is None:
        assert (got.reply.id, got.reply.seq, got.reply.snippet) == (m.reply_to, 0, "")
    else:
        q = m.quote
        assert (got.reply.id, got.reply.seq, got.reply.sender, got.reply.type, got.reply.snippet,
                got.reply.recalled) == (q.id, q.seq, q.sender, q.type, q.snippet, q.recalled)
    assert got.forwarded_from == m.fwd


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=["python", "cython"])
def test_an_ack_carries_the_stored_ids(impl) -> None:
    m = StoredMessage(77, ConvId("p1_2"), 5, UserId(1), 2, "cm-1", 1, "hello", 1_700_000_000_000)
    op, flags, req_id, target, body = decode_frame(impl.ack_frame(42, m))
    assert (op, flags, req_id, target) == (Op.SEND_ACK, 0, 42, 0)
    assert msgspec.msgpack.decode(body) == {"cmid": "cm-1", "msg_id": 77, "conv": "p1_2", "seq": 5,
                                            "ts": 1_700_000_000_000}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=["python", "cython"])
def test_a_message_too_large_for_a_frame_is_refused_not_cut(impl) -> None:
    m = StoredMessage(1, ConvId("p1_2"), 1, UserId(1), 2, "c", 1, "a" * MAX_BODY_SIZE, 0)
    with pytest.raises(FrameError) as caught:
        impl.message_frame(Op.MSG_PUSH, m)
    assert caught.value.code == ErrorCode.FRAME_TOO_LARGE
    assert HEADER_SIZE == struct.calcsize("<BBHIQI")


class _Origin:
    """A connection as the after-commit loop sees it: it records what it was sent."""

    def __init__(self) -> None:
        self.in_flight = 3
        self.sent: list[bytes] = []
        self.failed: list[tuple[int, int, BaseException]] = []

    def send_frame(self, frame: bytes) -> None:
        self.sent.append(frame)

    def fail(self, op: int, req_id: int, exc: BaseException) -> None:
        self.failed.append((op, req_id, exc))


def _no_failure(stored, exc, pushing) -> None:
    raise AssertionError(f"failed({stored.id}, {exc!r}, {pushing})")


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=["python", "cython"])
def test_the_after_commit_loop_acks_then_hands_new_messages_on_in_order(impl) -> None:
    origin = _Origin()
    new = StoredMessage(10, ConvId("p1_2"), 1, UserId(1), 2, "a", 1, "one", 5)
    retry = StoredMessage(11, ConvId("p1_2"), 2, UserId(1), 2, "b", 1, "two", 6, duplicate=True)
    by_server = StoredMessage(12, ConvId("p1_2"), 3, UserId(1), 2, "call:1", 8, "{}", 7)
    failure = RuntimeError("disk full")
    committed: list[int] = []
    pushed: list[tuple[int, object]] = []
    timed: list[float] = []

    acked = impl.settle_sends(
        [((origin, 1, 0.5), new, None), ((origin, 2, 0.0), retry, None), ((origin, 3, 0.0), None, failure),
         (None, by_server, None)],
        lambda m: committed.append(m.id), lambda m, o: pushed.append((m.id, o)), _no_failure, timed)

    assert acked == 2 and origin.in_flight == 0 and timed == [0.5]
    assert origin.sent == [frames_py.ack_frame(1, new), frames_py.ack_frame(2, retry)]  # the retry: acked, not pushed
    assert origin.failed == [(Op.SEND, 3, failure)]
    assert committed == [10, 12] and pushed == [(10, origin), (12, None)]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=["python", "cython"])
def test_a_message_whose_lists_or_push_fail_is_reported_and_the_batch_goes_on(impl) -> None:
    origin = _Origin()
    first = StoredMessage(20, ConvId("p1_2"), 1, UserId(1), 2, "a", 1, "one", 5)
    second = StoredMessage(21, ConvId("p1_2"), 2, UserId(1), 2, "b", 1, "two", 6)
    third = StoredMessage(22, ConvId("p1_2"), 3, UserId(1), 2, "c", 1, "three", 7)
    broken_lists, broken_push = RuntimeError("lists"), FrameError("too large")
    failures: list[tuple[int, BaseException, bool]] = []
    pushed: list[int] = []

    def committed(m) -> None:
        if m.id == 20:
            raise broken_lists

    def push(m, o) -> None:
        if m.id == 21:
            raise broken_push
        pushed.append(m.id)

    acked = impl.settle_sends([((origin, 1, 0.0), first, None), ((origin, 2, 0.0), second, None),
                               ((origin, 3, 0.0), third, None)],
                              committed, push, lambda m, exc, pushing: failures.append((m.id, exc, pushing)), [])

    assert acked == 3 and len(origin.sent) == 3  # every message is acked
    assert pushed == [20, 22]  # the first's lists failed, its push did not
    assert failures == [(20, broken_lists, False), (21, broken_push, True)]
