# cython: language_level=3
"""Compiled fanout: the node's routing table (who is connected here, and which local users
belong to which conversation), each connection's queue of frames for this loop iteration,
and the writer that puts a connection's queue into the socket with one call. Same
behaviour as the pure-Python twin ``fanout_py.py``.

A server-to-client WebSocket message is a 2-, 4- or 10-byte header (FIN + BINARY, no
mask) and the payload, so several messages are laid end to end in one buffer and handed
to picows's underlying transport in one write: one syscall instead of one per frame.
picows itself writes straight to the socket only while that transport has nothing
buffered, so its own writes (pongs, close frames) and ours stay in order. picows ships
``picows.pxd``: the transport's fields are read as C struct members.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t
from libc.string cimport memcpy
from picows.picows cimport WSMsgType, WSTransport
import logging

__all__ = ["write_frames", "Peer", "Outbox", "RoutingTable"]

_log = logging.getLogger("edgeim.fanout")

cdef uint8_t _FIN_BINARY = 0x82
# while the node's peers hold more than Outbox.max_bytes, a peer may hold 1/PRESSED of its
# own bound
cdef enum:
    PRESSED = 16


cdef inline Py_ssize_t _header_size(Py_ssize_t size) noexcept:
    if size < 126:
        return 2
    if size < 65536:
        return 4
    return 10


cdef inline Py_ssize_t _put_header(uint8_t* out, Py_ssize_t size) noexcept:
    cdef int i
    out[0] = _FIN_BINARY
    if size < 126:
        out[1] = <uint8_t>size
        return 2
    if size < 65536:
        out[1] = 126
        out[2] = <uint8_t>(size >> 8)
        out[3] = <uint8_t>size
        return 4
    out[1] = 127
    for i in range(8):
        out[2 + i] = <uint8_t>(size >> (8 * (7 - i)))
    return 10


cpdef Py_ssize_t write_frames(WSTransport transport, list frames) except -1:
    """Write ``frames`` (a list of ``bytes``, each one protocol frame) to ``transport`` as
    that many BINARY WebSocket messages, in order, with one write. Returns how many were
    written: 0 when the transport is disconnected or has sent its CLOSE frame (picows
    would drop them too). The frames are copied, not kept. Runs on the transport's loop.
    """
    cdef:
        Py_ssize_t count = len(frames), total = 0, offset = 0, size
        bytes frame, buffer
        uint8_t* out
    for item in frames:
        frame = <bytes?>item
        size = PyBytes_GET_SIZE(frame)
        total += _header_size(size) + size
    if transport.is_disconnected or transport.is_close_frame_sent or count == 0:
        return 0
    if count == 1:
        transport.send(WSMsgType.BINARY, frames[0])
        return 1
    buffer = PyBytes_FromStringAndSize(NULL, total)
    out = <uint8_t*>PyBytes_AS_STRING(buffer)
    for item in frames:
        frame = <bytes>item
        size = PyBytes_GET_SIZE(frame)
        offset += _put_header(out + offset, size)
        memcpy(out + offset, PyBytes_AS_STRING(frame), size)
        offset += size
    transport.underlying_transport.write(buffer)
    return count


# -- per-connection queues, the outbox, and the routing table ---------------------------------

cdef class Peer


cdef class Outbox:
    """Peers with frames queued in this loop iteration: each is written once, at the end
    of the iteration, so a commit batch that acks 16 sends of one connection costs one
    syscall, and a group push costs one queue append per receiving connection."""

    cdef object _loop
    cdef list _dirty
    cdef object _flush_cb
    #: bytes all peers may hold together (0: no bound): past it, a peer holding more than
    #: 1/PRESSED of its own bound is dropped as its next frame is queued
    cdef public Py_ssize_t max_bytes
    #: what the peers hold, as each last saw it (frames queued, the transport's unsent bytes)
    cdef readonly Py_ssize_t queued

    def __cinit__(self, object loop):
        self._loop = loop
        self._dirty = []
        self._flush_cb = self.flush
        self.max_bytes = 0
        self.queued = 0

    cpdef flush(self):
        cdef list dirty = self._dirty
        cdef Peer peer
        self._dirty = []
        for item in dirty:
            peer = <Peer>item
            try:
                peer.flush()
            except Exception:  # one broken socket must not hold back the others' frames
                _log.exception("write failed", extra={"user": peer.user})


cdef class Peer:
    """One connection's outgoing side: the frames queued for it in this loop iteration.
    ``owner`` is the session object (the routing table hands it back for kicks).

    ``max_bytes`` (0: no bound) bounds what the connection has not taken yet: the frames
    queued here plus the transport's unsent bytes. The frame that would pass it is not
    queued; the peer is closed and the connection dropped without a close frame (it would
    queue behind what the client does not read): a slow reader is dropped the moment its
    backlog would pass the bound, not later, so what one holds never exceeds it."""

    cdef readonly WSTransport transport
    cdef readonly object owner
    cdef public object user
    cdef public str terminal
    cdef public bint closed
    cdef public Py_ssize_t max_bytes
    #: True once the peer was dropped for passing ``max_bytes``
    cdef readonly bint overflowed
    # bytes of the frames in _out, and the transport's unsent bytes as of the last flush
    # (read again before a drop: the client may have read since)
    cdef Py_ssize_t _pending
    cdef Py_ssize_t _buffered
    # Two lists made once and swapped at each flush, never one per push: a push to 10,000
    # peers would otherwise make 10,000 lists that outlive a young GC generation and
    # trigger full collections (hundreds of ms with that many connections).
    cdef list _out
    cdef list _spare
    cdef bint _queued
    cdef Outbox _outbox

    def __cinit__(self, Outbox outbox, WSTransport transport, object owner):
        self._outbox = outbox
        self.transport = transport
        self.owner = owner
        self.user = 0
        self.terminal = ""
        self.closed = False
        self.max_bytes = 0
        self.overflowed = False
        self._pending = 0
        self._buffered = 0
        self._out = []
        self._spare = []
        self._queued = False

    cpdef send(self, bytes frame):
        """Queue ``frame`` (kept, not copied); it is written with the rest of this
        iteration's frames. Dropped once the peer is closed, or if it would pass
        ``max_bytes`` (the peer is closed then)."""
        cdef Py_ssize_t size
        cdef Py_ssize_t limit = self.max_bytes
        cdef Outbox outbox = self._outbox
        if frame is None:
            raise TypeError("frame must be bytes, not None")
        if self.closed:
            return
        size = PyBytes_GET_SIZE(frame)
        if limit and outbox.max_bytes and outbox.queued + size > outbox.max_bytes:
            limit = limit // PRESSED  # the node holds too much: laggards go first
        if limit and self._pending + self._buffered + size > limit:
            self.refresh()
            if self._pending + self._buffered + size > limit:
                self._overflow()
                return
        self._pending += size
        outbox.queued += size
        if not self._queued:
            self._queued = True
            if not self._outbox._dirty:
                self._outbox._loop.call_soon(self._outbox._flush_cb)
            self._outbox._dirty.append(self)
        self._out.append(frame)

    cpdef flush(self):
        cdef list frames = self._out
        # swapped before the write: a frame queued while it runs goes to the next flush
        self._out, self._spare = self._spare, frames
        self._queued = False
        self._outbox.queued -= self._pending
        self._pending = 0
        if frames:
            try:
                write_frames(self.transport, frames)
            finally:
                frames.clear()
            self.refresh()

    cpdef refresh(self):
        """Read again how many bytes the transport has not sent (the client may have read)."""
        cdef Py_ssize_t now
        if self.closed or not self.max_bytes:
            return
        now = self.transport.underlying_transport.get_write_buffer_size()
        self._outbox.queued += now - self._buffered
        self._buffered = now

    cpdef close(self):
        """The connection is gone: the peer takes nothing more and holds nothing."""
        self.closed = True
        self._outbox.queued -= self._pending + self._buffered
        self._pending = self._buffered = 0

    cpdef release(self):
        """The session is gone and out of the routing table: the peer lets go of it and of
        its transport. A session and its peer refer to each other; without this, every
        closed connection (session, peer, picows and uvloop transports: ~18 objects) is
        a reference cycle that only a garbage collection frees, and a full one once it
        has aged (docs/architecture.md, "Garbage collection")."""
        self.close()
        self.owner = None
        self.transport = None
        self._out.clear()
        self._spare.clear()

    cdef _overflow(self):
        self.close()
        self.overflowed = True
        self._out.clear()
        _log.warning("slow consumer dropped", extra={"user": self.user, "max_bytes": self.max_bytes})
        # later, not inside the caller's loop over the routing table's peers
        self._outbox._loop.call_soon((<object>self.transport).disconnect, False)


cdef class RoutingTable:
    """The node's local sessions: (user, terminal) -> peer, and conversation -> the local
    users who are its members. A frame for a user or a conversation is appended to each
    receiving peer's queue here, in C, with the same bytes object for every peer."""

    cdef dict _users
    cdef dict _convs
    cdef Py_ssize_t _count

    def __cinit__(self):
        self._users = {}
        self._convs = {}
        self._count = 0

    def __len__(self):
        return self._count

    cpdef object attach(self, Peer peer):
        """Make ``peer`` the live one of its (user, terminal); returns the peer it replaced."""
        cdef dict terminals = self._users.get(peer.user)
        if terminals is None:
            terminals = self._users[peer.user] = {}
        old = terminals.get(peer.terminal)
        terminals[peer.terminal] = peer
        if old is None:
            self._count += 1
            return None
        return None if old is peer else old

    cpdef bint detach(self, Peer peer):
        """Forget ``peer`` if it is still the live one of its (user, terminal)."""
        cdef dict terminals = self._users.get(peer.user)
        if terminals is None or terminals.get(peer.terminal) is not peer:
            return False
        del terminals[peer.terminal]
        self._count -= 1
        if not terminals:
            del self._users[peer.user]
        return True

    cpdef object get(self, object user, str terminal):
        cdef dict terminals = self._users.get(user)
        return None if terminals is None else terminals.get(terminal)

    cpdef list peers(self, object user):
        cdef dict terminals = self._users.get(user)
        return [] if terminals is None else list(terminals.values())

    cpdef bint online(self, object user):
        return user in self._users

    cpdef bint join(self, str conv, object user):
        """``user`` (online here) is a member of ``conv``; True if it is the first local one."""
        cdef set members = self._convs.get(conv)
        if members is None:
            self._convs[conv] = {user}
            return True
        members.add(user)
        return False

    cpdef bint leave(self, str conv, object user):
        """``user`` is no longer a local member of ``conv``; True if it was the last one."""
        cdef set members = self._convs.get(conv)
        if members is None or user not in members:
            return False
        members.discard(user)
        if not members:
            del self._convs[conv]
            return True
        return False

    cpdef Py_ssize_t members(self, str conv):
        cdef set members = self._convs.get(conv)
        return 0 if members is None else len(members)

    cpdef Py_ssize_t to_users(self, bytes frame, object users, object skip_user=0, str skip_terminal=""):
        """Queue ``frame`` on every peer of ``users`` but (skip_user, skip_terminal);
        returns how many peers got it."""
        cdef Py_ssize_t queued = 0
        cdef dict terminals
        for user in users:
            terminals = self._users.get(user)
            if terminals is not None:
                queued += _queue(terminals, frame, user == skip_user, skip_terminal)
        return queued

    cpdef Py_ssize_t to_conv(self, bytes frame, str conv, object skip_user=0, str skip_terminal="",
                             object skip_users=None):
        """Queue ``frame`` on every peer of every local member of ``conv`` but
        (skip_user, skip_terminal) and the users in ``skip_users`` (a set, or None: those
        get it by name); returns how many peers got it."""
        cdef set members = self._convs.get(conv)
        cdef Py_ssize_t queued = 0
        cdef dict terminals
        if members is None:
            return 0
        for user in members:
            if skip_users is not None and user in skip_users:
                continue
            terminals = self._users.get(user)
            if terminals is not None:
                queued += _queue(terminals, frame, user == skip_user, skip_terminal)
        return queued


cdef inline Py_ssize_t _queue(dict terminals, bytes frame, bint skipping, str skip_terminal):
    cdef Py_ssize_t queued = 0
    cdef Peer peer
    for terminal, item in terminals.items():
        if skipping and terminal == skip_terminal:
            continue
        peer = <Peer>item
        peer.send(frame)
        queued += 1
    return queued
