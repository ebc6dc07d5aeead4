"""Unique 64-bit message ids: 41 bits of milliseconds since 2025-01-01, 10 bits of
node number, 12 bits of sequence within the millisecond. Ids from one node increase
strictly, also if the wall clock steps back; two nodes never collide while their node
numbers differ, which the lease of node numbers in the routes guarantees."""
from __future__ import annotations

import time

__all__ = ["IdGenerator", "NODE_NUMBERS"]

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
_SEQ_BITS = 12
_NODE_BITS = 10
_SEQ_MASK = (1 << _SEQ_BITS) - 1
#: how many node numbers there are (10 bits)
NODE_NUMBERS = 1 << _NODE_BITS


class IdGenerator:
    __slots__ = ("_node", "_last_ms", "_seq")

    def __init__(self, node: int = 0) -> None:
        self._node = 0
        self.set_node(node)
        self._last_ms = 0
        self._seq = 0

    @property
    def node(self) -> int:
        return self._node >> _SEQ_BITS

    def set_node(self, node: int) -> None:
        """The node number, leased from the routes when the node starts (``Routes.lease_number``):
        two live nodes never hold the same one, so their ids never collide."""
        if not 0 <= node < NODE_NUMBERS:
            raise ValueError("node number must fit in 10 bits")
        self._node = node << _SEQ_BITS

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
