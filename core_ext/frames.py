"""The frames of a stored message (its SEND_ACK, its pushes) and the after-commit loop
that sends them: the compiled ``_frames`` unless ``EDGEIM_NO_EXT=1`` (or it is not
built), then its pure-Python twin ``frames_py``. Both give the same bytes."""
from __future__ import annotations

from ._select import select
from .frames_py import message_body

__all__ = ["ack_frame", "message_frame", "message_body", "settle_sends", "IMPLEMENTATION"]

_impl, IMPLEMENTATION = select("._frames", ".frames_py")
ack_frame = _impl.ack_frame
message_frame = _impl.message_frame
settle_sends = _impl.settle_sends
