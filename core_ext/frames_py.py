"""Pure-Python twin of ``_frames.pyx``: the frames of a stored message, the reference the
compiled encoders are tested against byte for byte (tests/core_ext/test_frames.py).

``m`` is a stored message: any object with ``StoredMessage``'s fields (id, conv, seq,
sender, to, cmid, type, content, ts, mentions, recalled_by, recalled_at, reply_to, edited_at,
rev, quote, fwd, and for pages reactions, which a push does not carry).
"""
from __future__ import annotations

from typing import Any

import msgspec

from . import bodies, content
from .codec import encode_frame
from .protocol import Flag, Op

__all__ = ["ack_frame", "message_frame", "message_body", "reply_body", "reactions", "settle_sends"]

_SEND = int(Op.SEND)
_SEND_ACK = int(Op.SEND_ACK)
_GROUP = int(Flag.GROUP)


def message_body(m: Any) -> bodies.Message:
    """The ``Message`` body of a stored message (pushes and pages; a page carries the
    reactions beside its messages: ``reactions``)."""
    if m.mentions:
        everyone = m.mentions == "*"
        mentions = [] if everyone else [int(u) for u in m.mentions.split(",")]
    else:
        everyone, mentions = False, []
    return bodies.Message(
        id=m.id, conv=m.conv, seq=m.seq, sender=m.sender, to=m.to, cmid=m.cmid, type=m.type,
        content=content.wire(m.type, m.content), ts=m.ts, mentions=mentions, mention_all=everyone,
        recalled_by=m.recalled_by, recalled_at=m.recalled_at, reply=reply_body(m), edited_at=m.edited_at,
        rev=m.rev, forwarded_from=m.fwd,
    )


def reply_body(m: Any) -> bodies.Reply | None:
    """What a reply quotes: its resolved ``quote``, else (not resolved, or not visible to
    the reader) the quoted id alone; None for a message that is not a reply."""
    if not m.reply_to:
        return None
    q = m.quote
    if q is not None:
        return bodies.Reply(id=q.id, seq=q.seq, sender=q.sender, type=q.type, snippet=q.snippet, recalled=q.recalled)
    return bodies.Reply(id=m.reply_to, seq=0, sender=0, type=0, snippet="", recalled=False)


_summaries = msgspec.json.Decoder(list[tuple[str, int, list[int]]])


def reactions(summary: str) -> list[bodies.Reaction]:
    """The ``Reaction`` items of a stored summary (``StoredMessage.reactions``)."""
    if not summary:
        return []
    return [bodies.Reaction(emoji=e, count=n, users=users) for e, n, users in _summaries.decode(summary)]


def ack_frame(req_id: int, m: Any) -> bytes:
    """The SEND_ACK of request ``req_id`` for the stored message ``m``."""
    body = bodies.SendAck(cmid=m.cmid, msg_id=m.id, conv=m.conv, seq=m.seq, ts=m.ts)
    return encode_frame(_SEND_ACK, req_id, 0, bodies.encode(body))


def message_frame(op: int, m: Any) -> bytes:
    """A push of ``m`` (MSG_PUSH, RECALL_PUSH): target its receiver or group, flag GROUP
    for a group's conversation. FRAME_TOO_LARGE if it cannot fit a frame."""
    return encode_frame(op, 0, m.to, bodies.encode(message_body(m)), _GROUP if m.conv[:1] == "g" else 0)


def settle_sends(outcomes: list[tuple[Any, Any, Any]], committed: Any, push: Any, failed: Any,
                 timed: list[float]) -> int:
    """The after-commit loop of a batch of messages (``Pipeline.on_committed``), in commit
    order. Each outcome is ``(ticket, stored, error)``: a SEND's ticket is ``(origin,
    req_id, started)`` and gets its SEND_ACK, or ``origin.fail(SEND, req_id, error)``; a
    message the server wrote has ticket None. A new message (not a retry's original) then
    goes to ``committed(stored)`` and ``push(stored, origin)`` (origin None for the
    server's). Either may raise: ``failed(stored, exc, pushing)`` is told, and the loop
    goes on (the message is durable and acked). A SEND timed since ``started`` (0: not
    timed) appends it to ``timed``. Returns how many SENDs were acked."""
    acked = 0
    for ticket, stored, error in outcomes:
        if ticket is not None:
            origin, req_id, started = ticket
            origin.in_flight -= 1
            if started:
                timed.append(started)
            if stored is None:
                origin.fail(_SEND, req_id, error)
                continue
            origin.send_frame(ack_frame(req_id, stored))
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
