"""Wire protocol v1 constants: the one place the numbers of docs/protocol.md live.

Every binary WebSocket message is one frame: a fixed 20-byte little-endian header
followed by a MessagePack body.

    offset  size  field      meaning
    0       1     version    protocol version, 1
    1       1     op         operation (``Op``)
    2       2     flags      bit field (``Flag``); unknown bits must be 0
    4       4     req_id     request id chosen by the client, echoed in the reply; 0 on pushes
    8       8     target     routing field: receiver user (or, with flag GROUP, group) id of a
                             send and of its push, else 0
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
    "PUSH_OPS",
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
    """Operations. Requests (client to server) are 0x01..0x3F and 0x50..0x7E; pushes
    (server to client, req_id 0) are 0x40..0x4F; a reply is ``request | 0x80``; ERROR is 0xFF.
    Which body each op carries is declared once, in ``bodies.OPS``."""

    PING = 0x01
    REGISTER = 0x02
    LOGIN = 0x03
    TOKEN_LOGIN = 0x04
    LOGOUT = 0x05
    # user profiles
    USER_FIND = 0x06
    USERS = 0x07
    # messages and conversations
    SEND = 0x10
    SYNC = 0x11
    HISTORY = 0x12
    CONVERSATIONS = 0x13
    CONV_SET = 0x14
    READ = 0x15
    READERS = 0x16
    RECALL = 0x17
    SEARCH = 0x18
    # friends
    FRIEND_REQUEST = 0x20
    FRIEND_ACCEPT = 0x21
    FRIEND_REJECT = 0x22
    FRIEND_DELETE = 0x23
    FRIENDS = 0x24
    FRIEND_REQUESTS = 0x25
    FRIEND_REMARK = 0x26
    BLOCK = 0x27
    UNBLOCK = 0x28
    BLOCKS = 0x2D
    # groups
    GROUP_CREATE = 0x30
    GROUP_DISSOLVE = 0x31
    GROUP_UPDATE = 0x32
    GROUP_INFO = 0x33
    GROUPS = 0x34
    GROUP_MEMBERS = 0x35
    GROUP_INVITE = 0x36
    GROUP_JOIN = 0x37
    GROUP_JOIN_REQUESTS = 0x38
    GROUP_APPROVE = 0x39
    GROUP_QUIT = 0x3A
    GROUP_KICK = 0x3B
    GROUP_SET_ROLE = 0x3C
    GROUP_TRANSFER = 0x3D
    GROUP_MUTE = 0x3E
    GROUP_MUTE_ALL = 0x3F
    # rich messaging: calls, typing, presence, settings
    CALL_INVITE = 0x08
    CALL_ACCEPT = 0x09
    CALL_REJECT = 0x0A
    CALL_CANCEL = 0x0B
    CALL_HANGUP = 0x0C
    CALL_ICE = 0x0D
    TYPING = 0x19
    PRESENCE = 0x29
    PRESENCE_SUBSCRIBE = 0x2A
    PRESENCE_UNSUBSCRIBE = 0x2B
    SETTINGS = 0x2C
    # files: upload and download grants (signed HTTP URLs)
    FILE_UPLOAD = 0x1A
    FILE_DOWNLOAD = 0x1B
    # group invitations: adds the invitee's GROUP_ADD setting does not allow directly
    GROUP_INVITATIONS = 0x68
    GROUP_INVITATION_ACCEPT = 0x69
    GROUP_INVITATION_DECLINE = 0x6A
    # message edits (replies are a field of SEND)
    EDIT = 0x59
    # accounts and profiles
    PROFILE_SET = 0x50
    PASSWORD_CHANGE = 0x51
    ACCOUNT_DELETE = 0x52
    # reactions and forwards
    REACT = 0x58
    FORWARD = 0x5A
    # per-user views and message pins (docs/protocol.md 9.23)
    DELETE_FOR_ME = 0x60
    CLEAR_HISTORY = 0x61
    PIN_MESSAGE = 0x62
    UNPIN_MESSAGE = 0x63
    PINS = 0x64

    PONG = PING | RESPONSE_BIT
    REGISTER_OK = REGISTER | RESPONSE_BIT
    LOGIN_OK = LOGIN | RESPONSE_BIT
    TOKEN_LOGIN_OK = TOKEN_LOGIN | RESPONSE_BIT
    LOGOUT_OK = LOGOUT | RESPONSE_BIT
    USER_FIND_OK = USER_FIND | RESPONSE_BIT
    USERS_OK = USERS | RESPONSE_BIT
    SEND_ACK = SEND | RESPONSE_BIT
    SYNC_OK = SYNC | RESPONSE_BIT
    HISTORY_OK = HISTORY | RESPONSE_BIT
    CONVERSATIONS_OK = CONVERSATIONS | RESPONSE_BIT
    CONV_SET_OK = CONV_SET | RESPONSE_BIT
    READ_OK = READ | RESPONSE_BIT
    READERS_OK = READERS | RESPONSE_BIT
    RECALL_OK = RECALL | RESPONSE_BIT
    SEARCH_OK = SEARCH | RESPONSE_BIT
    FRIEND_REQUEST_OK = FRIEND_REQUEST | RESPONSE_BIT
    FRIEND_ACCEPT_OK = FRIEND_ACCEPT | RESPONSE_BIT
    FRIEND_REJECT_OK = FRIEND_REJECT | RESPONSE_BIT
    FRIEND_DELETE_OK = FRIEND_DELETE | RESPONSE_BIT
    FRIENDS_OK = FRIENDS | RESPONSE_BIT
    FRIEND_REQUESTS_OK = FRIEND_REQUESTS | RESPONSE_BIT
    FRIEND_REMARK_OK = FRIEND_REMARK | RESPONSE_BIT
    BLOCK_OK = BLOCK | RESPONSE_BIT
    UNBLOCK_OK = UNBLOCK | RESPONSE_BIT
    BLOCKS_OK = BLOCKS | RESPONSE_BIT
    GROUP_CREATE_OK = GROUP_CREATE | RESPONSE_BIT
    GROUP_DISSOLVE_OK = GROUP_DISSOLVE | RESPONSE_BIT
    GROUP_UPDATE_OK = GROUP_UPDATE | RESPONSE_BIT
    GROUP_INFO_OK = GROUP_INFO | RESPONSE_BIT
    GROUPS_OK = GROUPS | RESPONSE_BIT
    GROUP_MEMBERS_OK = GROUP_MEMBERS | RESPONSE_BIT
    GROUP_INVITE_OK = GROUP_INVITE | RESPONSE_BIT
    GROUP_JOIN_OK = GROUP_JOIN | RESPONSE_BIT
    GROUP_JOIN_REQUESTS_OK = GROUP_JOIN_REQUESTS | RESPONSE_BIT
    GROUP_APPROVE_OK = GROUP_APPROVE | RESPONSE_BIT
    GROUP_QUIT_OK = GROUP_QUIT | RESPONSE_BIT
    GROUP_KICK_OK = GROUP_KICK | RESPONSE_BIT
    GROUP_SET_ROLE_OK = GROUP_SET_ROLE | RESPONSE_BIT
    GROUP_TRANSFER_OK = GROUP_TRANSFER | RESPONSE_BIT
    GROUP_MUTE_OK = GROUP_MUTE | RESPONSE_BIT
    GROUP_MUTE_ALL_OK = GROUP_MUTE_ALL | RESPONSE_BIT
    # rich messaging
    CALL_INVITE_OK = CALL_INVITE | RESPONSE_BIT
    CALL_ACCEPT_OK = CALL_ACCEPT | RESPONSE_BIT
    CALL_REJECT_OK = CALL_REJECT | RESPONSE_BIT
    CALL_CANCEL_OK = CALL_CANCEL | RESPONSE_BIT
    CALL_HANGUP_OK = CALL_HANGUP | RESPONSE_BIT
    CALL_ICE_OK = CALL_ICE | RESPONSE_BIT
    TYPING_OK = TYPING | RESPONSE_BIT
    PRESENCE_OK = PRESENCE | RESPONSE_BIT
    PRESENCE_SUBSCRIBE_OK = PRESENCE_SUBSCRIBE | RESPONSE_BIT
    PRESENCE_UNSUBSCRIBE_OK = PRESENCE_UNSUBSCRIBE | RESPONSE_BIT
    SETTINGS_OK = SETTINGS | RESPONSE_BIT
    # files
    FILE_UPLOAD_OK = FILE_UPLOAD | RESPONSE_BIT
    FILE_DOWNLOAD_OK = FILE_DOWNLOAD | RESPONSE_BIT
    GROUP_INVITATIONS_OK = GROUP_INVITATIONS | RESPONSE_BIT
    GROUP_INVITATION_ACCEPT_OK = GROUP_INVITATION_ACCEPT | RESPONSE_BIT
    GROUP_INVITATION_DECLINE_OK = GROUP_INVITATION_DECLINE | RESPONSE_BIT
    EDIT_OK = EDIT | RESPONSE_BIT
    # accounts and profiles
    PROFILE_SET_OK = PROFILE_SET | RESPONSE_BIT
    PASSWORD_CHANGE_OK = PASSWORD_CHANGE | RESPONSE_BIT
    ACCOUNT_DELETE_OK = ACCOUNT_DELETE | RESPONSE_BIT
    # reactions and forwards
    REACT_OK = REACT | RESPONSE_BIT
    FORWARD_OK = FORWARD | RESPONSE_BIT
    # per-user views and message pins
    DELETE_FOR_ME_OK = DELETE_FOR_ME | RESPONSE_BIT
    CLEAR_HISTORY_OK = CLEAR_HISTORY | RESPONSE_BIT
    PIN_MESSAGE_OK = PIN_MESSAGE | RESPONSE_BIT
    UNPIN_MESSAGE_OK = UNPIN_MESSAGE | RESPONSE_BIT
    PINS_OK = PINS | RESPONSE_BIT

    MSG_PUSH = 0x40
    KICKED = 0x41
    FRIEND_PUSH = 0x42
    GROUP_PUSH = 0x43
    READ_PUSH = 0x44
    CONV_PUSH = 0x45
    RECALL_PUSH = 0x46
    # rich messaging
    TYPING_PUSH = 0x47
    PRESENCE_PUSH = 0x48
    CALL_PUSH = 0x49
    EDIT_PUSH = 0x4C
    # accounts and profiles
    PROFILE_PUSH = 0x4A
    # reactions
    REACTION_PUSH = 0x4B
    # message pins, to the conversation's members; a user's own view, to their other devices
    PIN_PUSH = 0x4D
    VIEW_PUSH = 0x4E

    ERROR = 0xFF


class Flag(enum.IntFlag):
    NONE = 0
    #: Set by a client on a SEND it is retrying (same cmid); informational only.
    RETRY = 0x0001
    #: SEND and MSG_PUSH: ``target`` is a group id, not a user id.
    GROUP = 0x0002


KNOWN_FLAGS = int(Flag.RETRY | Flag.GROUP)

#: Pushes are 0x40..0x4F; requests are below 0x40 and, since they ran out, 0x50..0x7E too
#: (their replies, 0xD0..0xFE, stay clear of ERROR).
PUSH_OPS = range(0x40, 0x50)
#: Every op a client may send: the requests.
REQUEST_OPS = frozenset(op for op in Op if op < 0x7F and op not in PUSH_OPS)


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
    ACCOUNT_DISABLED = 2006  # LOGIN / TOKEN_LOGIN: an operator disabled the account (im user disable)
    ACCOUNT_DELETED = 2007  # LOGIN / TOKEN_LOGIN: the account was deleted (ACCOUNT_DELETE, im user delete)
    # 3xxx: the request is well formed but refused
    USER_NOT_FOUND = 3000
    FORBIDDEN = 3001
    INVALID_ARGUMENT = 3002
    NOT_FRIENDS = 3003  # 1:1 send to a stranger while only friends may send
    BLOCKED = 3004  # the other user blocked you
    CONFLICT = 3005  # already done: already friends, already a member, request pending
    NOT_FOUND = 3006  # no such group, request or conversation entry
    MUTED = 3007  # you are muted in this group, or the whole group is
    GROUP_FULL = 3008  # the group is at its member limit
    RECALL_EXPIRED = 3009  # the sender's recall window for this message has passed
    FILE_TOO_LARGE = 3010  # FILE_UPLOAD: the size is over the node's file size limit
    FILE_TYPE_REFUSED = 3011  # FILE_UPLOAD: the mime type is not one the node accepts
    BUSY = 3012  # CALL_INVITE: the callee (or the caller) is already in a call
    SEARCH_TIMEOUT = 3013  # SEARCH: not answered within the node's search timeout
    FILE_QUOTA_EXCEEDED = 3014  # FILE_UPLOAD: the account keeps as many bytes of files as it may
    #: GROUP_CREATE / GROUP_INVITE: an invitee holds as many pending invitations as they
    #: may, or the caller has sent as many pending ones as they may
    INVITATIONS_FULL = 3030
    EDIT_EXPIRED = 3020  # EDIT: the sender's edit window for this message has passed
    REPLY_NOT_FOUND = 3021  # SEND: the quoted message is not in this conversation, or not visible to the sender
    NOT_EDITABLE = 3022  # EDIT: the message was recalled, or its type cannot be edited (only text can)
    # reactions and forwards
    REACTION_LIMIT = 3023  # REACT: the message has as many distinct emoji, or you as many reactions, as it may
    MESSAGE_RECALLED = 3024  # REACT, FORWARD, PIN_MESSAGE: the message was recalled
    FORWARD_LIMIT = 3025  # FORWARD: more messages than the node's forward_max at once
    NOT_FORWARDABLE = 3026  # FORWARD: a message of a kind that is not forwarded (a call record)
    PINS_FULL = 3027  # PIN_MESSAGE: the conversation has as many message pins as it may
    # 4xxx: limits
    RATE_LIMITED = 4000
    TOO_MANY_SESSIONS = 4001  # the account has as many live sessions as it may
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
