"""Pure-Python twin of ``_fanout.pyx``: the reference the compiled routing table, queues and
writer are tested against (tests/core_ext/test_fanout.py runs one suite on both)."""
from __future__ import annotations

import asyncio
import logging
import struct
from typing import Iterable

from picows import WSMsgType, WSTransport

__all__ = ["write_frames", "Peer", "Outbox", "RoutingTable"]

_BINARY = WSMsgType.BINARY
#: while the node's peers hold more than Outbox.max_bytes, a peer may hold 1/PRESSED of its bound
PRESSED = 16
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


log = logging.getLogger("edgeim.fanout")


class Outbox:
    """Peers with frames queued in this loop iteration; each is written once, at its end."""

    __slots__ = ("_loop", "_dirty", "_flush_cb", "max_bytes", "queued")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[Peer] = []
        self._flush_cb = self.flush
        #: bytes all peers may hold together (0: no bound): past it, a peer holding more
        #: than 1/PRESSED of its own bound is dropped as its next frame is queued
        self.max_bytes = 0
        #: what the peers hold, as each last saw it
        self.queued = 0

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            try:
                peer.flush()
            except Exception:  # one broken socket must not hold back the others' frames
                log.exception("write failed", extra={"user": peer.user})


class Peer:
    """One connection's outgoing side: the frames queued for it in this loop iteration.
    ``max_bytes`` (0: no bound) bounds the frames queued plus the transport's unsent
    bytes: the frame that would pass it closes the peer and drops the connection (see
    _fanout.pyx)."""

    __slots__ = ("transport", "owner", "user", "terminal", "closed", "max_bytes", "overflowed", "_pending", "_buffered",
                 "_out", "_spare", "_queued", "_outbox")

    def __init__(self, outbox: Outbox, transport: WSTransport, owner: object) -> None:
        if not isinstance(outbox, Outbox):
            raise TypeError(f"expected an Outbox, not {type(outbox).__name__}")
        self._outbox = outbox
        self.transport = transport
        self.owner = owner
        self.user = 0
        self.terminal = ""
        self.closed = False
        self.max_bytes = 0
        self.overflowed = False
        self._pending = 0  # bytes in _out
        self._buffered = 0  # the transport's unsent bytes at the last flush (read again before a drop)
        # two lists made once and swapped at each flush, never one per push (see _fanout.pyx)
        self._out: list[bytes] = []
        self._spare: list[bytes] = []
        self._queued = False

    def send(self, frame: bytes) -> None:
        if type(frame) is not bytes:
            raise TypeError(f"frame must be bytes, not {type(frame).__name__}")
        if self.closed:
            return
        size = len(frame)
        limit = self.max_bytes
        outbox = self._outbox
        if limit and outbox.max_bytes and outbox.queued + size > outbox.max_bytes:
            limit //= PRESSED  # the node holds too much: laggards go first
        if limit and self._pending + self._buffered + size > limit:
            self.refresh()
            if self._pending + self._buffered + size > limit:
                self._overflow()
                return
        self._pending += size
        outbox.queued += size
        if not self._queued:
            self._queued = True
            outbox = self._outbox
            if not outbox._dirty:
                outbox._loop.call_soon(outbox._flush_cb)
            outbox._dirty.append(self)
        self._out.append(frame)

    def flush(self) -> None:
        frames = self._out
        self._out, self._spare = self._spare, frames  # a frame queued during the write goes next time
        self._queued = False
        self._outbox.queued -= self._pending
        self._pending = 0
        if frames:
            try:
                write_frames(self.transport, frames)
            finally:
                frames.clear()
            self.refresh()

    def refresh(self) -> None:
        """Read again how many bytes the transport has not sent (the client may have read)."""
        if self.closed or not self.max_bytes:
            return
        now = self.transport.underlying_transport.get_write_buffer_size()
        self._outbox.queued += now - self._buffered
        self._buffered = now

    def close(self) -> None:
        """The connection is gone: the peer takes nothing more and holds nothing."""
        self.closed = True
        self._outbox.queued -= self._pending + self._buffered
        self._pending = self._buffered = 0

    def release(self) -> None:
        """The session is gone and out of the routing table: the peer lets go of it and of
        its transport, so neither waits for the cycle collector (see _fanout.pyx)."""
        self.close()
        self.owner = None
        self.transport = None  # type: ignore[assignment]
        self._out.clear()
        self._spare.clear()

    def _overflow(self) -> None:
        self.close()
        self.overflowed = True
        self._out.clear()
        log.warning("slow consumer dropped", extra={"user": self.user, "max_bytes": self.max_bytes})
        # later, not inside the caller's loop over the routing table's peers
        self._outbox._loop.call_soon(self.transport.disconnect, False)


class RoutingTable:
    """(user, terminal) -> peer, and conversation -> its local member users."""

    __slots__ = ("_users", "_convs", "_count")

    def __init__(self) -> None:
        self._users: dict[int, dict[str, Peer]] = {}
        self._convs: dict[str, set[int]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def attach(self, peer: Peer) -> Peer | None:
        terminals = self._users.setdefault(peer.user, {})
        old = terminals.get(peer.terminal)
        terminals[peer.terminal] = peer
        if old is None:
            self._count += 1
            return None
        return None if old is peer else old

    def detach(self, peer: Peer) -> bool:
        terminals = self._users.get(peer.user)
        if terminals is None or terminals.get(peer.terminal) is not peer:
            return False
        del terminals[peer.terminal]
        self._count -= 1
        if not terminals:
            del self._users[peer.user]
        return True

    def get(self, user: int, terminal: str) -> Peer | None:
        terminals = self._users.get(user)
        return None if terminals is None else terminals.get(terminal)

    def peers(self, user: int) -> list[Peer]:
        terminals = self._users.get(user)
        return [] if terminals is None else list(terminals.values())

    def online(self, user: int) -> bool:
        return user in self._users

    def join(self, conv: str, user: int) -> bool:
        members = self._convs.get(conv)
        if members is None:
            self._convs[conv] = {user}
            return True
        members.add(user)
        return False

    def leave(self, conv: str, user: int) -> bool:
        members = self._convs.get(conv)
        if members is None or user not in members:
            return False
        members.discard(user)
        if not members:
            del self._convs[conv]
            return True
        return False

    def members(self, conv: str) -> int:
        return len(self._convs.get(conv, ()))

    def to_users(self, frame: bytes, users: Iterable[int], skip_user: int = 0, skip_terminal: str = "") -> int:
        queued = 0
        for user in users:
            terminals = self._users.get(user)
            if terminals is not None:
                queued += _queue(terminals, frame, user == skip_user, skip_terminal)
        return queued

    def to_conv(self, frame: bytes, conv: str, skip_user: int = 0, skip_terminal: str = "",
                skip_users: set[int] | None = None) -> int:
        members = self._convs.get(conv)
        if members is None:
            return 0
        queued = 0
        for user in members:
            if skip_users is not None and user in skip_users:
                continue
            terminals = self._users.get(user)
            if terminals is not None:
                queued += _queue(terminals, frame, user == skip_user, skip_terminal)
        return queued


def _queue(terminals: dict[str, Peer], frame: bytes, skipping: bool, skip_terminal: str) -> int:
    queued = 0
    for terminal, peer in terminals.items():
        if skipping and terminal == skip_terminal:
            continue
        peer.send(frame)
        queued += 1
    return queued
