"""The fanout: the compiled ``_fanout`` unless ``EDGEIM_NO_EXT=1`` (or it is not built),
then its pure-Python twin ``fanout_py``. Both have the same API."""
from __future__ import annotations

from ._select import select

__all__ = ["write_frames", "Peer", "Outbox", "RoutingTable", "IMPLEMENTATION"]

_impl, IMPLEMENTATION = select("._fanout", ".fanout_py")
write_frames = _impl.write_frames
Peer = _impl.Peer
Outbox = _impl.Outbox
RoutingTable = _impl.RoutingTable
