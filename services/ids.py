"""Unique 64-bit message ids: 41 bits of milliseconds since 2025-01-01, 10 bits of
node number, 12 bits of sequence within the millisecond. Ids from one node increase
strictly, also if the wall clock steps back; two nodes never collide while their node
numbers differ."""
from __future__ import annotations

import time
import zlib

__all__ = ["IdGenerator", "node_number"]

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_SEQ_BITS = 12
_NODE_BITS = 10
_SEQ_MASK = (1 << _SEQ_BITS) - 1


def node_number(node_id: str) -> int:
    """A stable 10-bit number for a node id (set IM_NODE_NUMBER-style ids apart in clusters)."""
    return zlib.crc32(node_id.encode()) & ((1 << _NODE_BITS) - 1)


class IdGenerator:
    __slots__ = ("_node", "_last_ms", "_seq")

    def __init__(self, node: int) -> None:
        if not 0 <= node < (1 << _NODE_BITS):
            raise ValueError("node number must fit in 10 bits")
        self._node = node << _SEQ_BITS
        self._last_ms = 0
        self._seq = 0

    def next(self) -> int:
        now = int(time.time() * 1000) - EPOCH_MS
        if now <= self._last_ms:
            # same millisecond, or the clock stepped back: keep counting on the last one
            self._seq = (self._seq + 1) & _SEQ_MASK
            if self._seq == 0:  # 4096 ids in one ms: borrow the next millisecond
                self._last_ms += 1
            now = self._last_ms
        else:
            self._seq = 0
            self._last_ms = now
        return (now << (_SEQ_BITS + _NODE_BITS)) | self._node | self._seq
