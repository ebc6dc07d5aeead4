"""Wire protocol v1 constants: the one place the numbers of docs/protocol.md live.

Every binary WebSocket message is one frame: a fixed 20-byte little-endian header
followed by a MessagePack body.

    offset  size  field      meaning
    0       1     version    protocol version, 1
    1       1     op         operation (``Op``)
    2       2     flags      bit field (``Flag``); unknown bits must be 0
    4       4     req_id     request id chosen by the client, echoed in the reply; 0 on pushes
    8       8     target     routing field: receiver user id of a send (and of its push), else 0
    16      4     body_len   length of the body in bytes; must equal frame length - 20
    20      ...   body       MessagePack map (empty body = zero bytes = empty map)

The header is what the edge reads to route a frame without decoding its body.
"""
from __future__ import annotations

import enum

__all__ = [
    "VERSION",
    "SUPPORTED_VERSIONS",
    "SUBPROTOCOL_PREFIX",
    "HEADER_SIZE",
    "HEADER_FORMAT",
    "MAX_FRAME_SIZE",
    "MAX_BODY_SIZE",
    "RESPONSE_BIT",
    "Op",
    "Flag",
    "KNOWN_FLAGS",
    "REQUEST_OPS",
    "ErrorCode",
    "CloseCode",
]

VERSION = 1
SUPPORTED_VERSIONS = (1,)
#: WebSocket subprotocol token of version N is ``edgeim.vN``.
SUBPROTOCOL_PREFIX = "edgeim.v"

HEADER_SIZE = 20
#: struct format of the header: version, op, flags, req_id, target, body_len.
HEADER_FORMAT = "<BBHIQI"
#: Largest WebSocket message the edge accepts (header included); larger closes with 1009.
MAX_FRAME_SIZE = 64 * 1024
MAX_BODY_SIZE = MAX_FRAME_SIZE - HEADER_SIZE

#: A successful reply carries the request op with this bit set.
RESPONSE_BIT = 0x80


class Op(enum.IntEnum):
    """Operations. Requests (client to server) are below 0x40; pushes (server to
    client, req_id 0) are 0x40..0x7F; a reply is ``request | 0x80``; ERROR is 0xFF."""

    PING = 0x01
    REGISTER = 0x02
    LOGIN = 0x03
    TOKEN_LOGIN = 0x04
    LOGOUT = 0x05
    SEND = 0x10
    SYNC = 0x11
    HISTORY = 0x12
    CONVERSATIONS = 0x13

    PONG = PING | RESPONSE_BIT
    REGISTER_OK = REGISTER | RESPONSE_BIT
    LOGIN_OK = LOGIN | RESPONSE_BIT
    TOKEN_LOGIN_OK = TOKEN_LOGIN | RESPONSE_BIT
    LOGOUT_OK = LOGOUT | RESPONSE_BIT
    SEND_ACK = SEND | RESPONSE_BIT
    SYNC_OK = SYNC | RESPONSE_BIT
    HISTORY_OK = HISTORY | RESPONSE_BIT
    CONVERSATIONS_OK = CONVERSATIONS | RESPONSE_BIT

    MSG_PUSH = 0x40
    KICKED = 0x41

    ERROR = 0xFF


class Flag(enum.IntFlag):
    NONE = 0
    #: Set by a client on a SEND it is retrying (same cmid); informational only.
    RETRY = 0x0001


KNOWN_FLAGS = int(Flag.RETRY)

REQUEST_OPS = frozenset(
    {Op.PING, Op.REGISTER, Op.LOGIN, Op.TOKEN_LOGIN, Op.LOGOUT, Op.SEND, Op.SYNC, Op.HISTORY, Op.CONVERSATIONS}
)


class ErrorCode(enum.IntEnum):
    """Codes carried in the body of an ERROR frame: ``{"code": int, "message": str}``."""

    # 1xxx: the frame itself is wrong
    BAD_FRAME = 1000  # truncated header, length field that lies
    BAD_VERSION = 1001  # version byte not supported
    UNKNOWN_OP = 1002  # op is not a request op
    BAD_BODY = 1003  # body is not MessagePack or not the op's schema
    FRAME_TOO_LARGE = 1004  # body_len above MAX_BODY_SIZE
    BAD_FLAGS = 1005  # unknown flag bits set
    # 2xxx: authentication
    NOT_AUTHENTICATED = 2000
    BAD_CREDENTIALS = 2001
    TOKEN_EXPIRED = 2002
    TOKEN_INVALID = 2003
    USERNAME_TAKEN = 2004
    ALREADY_AUTHENTICATED = 2005
    # 3xxx: the request is well formed but refused
    USER_NOT_FOUND = 3000
    FORBIDDEN = 3001
    INVALID_ARGUMENT = 3002
    # 4xxx: limits
    RATE_LIMITED = 4000
    # 5xxx: the server
    INTERNAL = 5000
    UNAVAILABLE = 5001


class CloseCode(enum.IntEnum):
    """WebSocket close codes the edge uses (4000-4999 are application codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001  # node shutting down or draining
    MESSAGE_TOO_BIG = 1009  # WebSocket message above MAX_FRAME_SIZE
    REPLACED = 4001  # same (user, terminal) logged in elsewhere; preceded by KICKED
    AUTH_TIMEOUT = 4002  # no successful login within the auth timeout
    IDLE_TIMEOUT = 4003  # no frame (or heartbeat) within the idle timeout
    POLICY = 4008  # flood or too many bad frames
    LOGGED_OUT = 4009  # after LOGOUT
