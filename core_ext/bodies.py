"""Frame bodies of protocol v1: MessagePack maps, typed with msgspec.

One Struct per body; the field names are the map keys of docs/protocol.md. Unknown
keys are ignored (forward compatibility); a missing required key, a wrong type or a
value outside its bounds is a ``BAD_BODY`` error. An empty body decodes as an empty map.
"""
from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .protocol import Op

__all__ = [
    "Register", "Login", "TokenLogin", "Send", "Sync", "History", "Empty",
    "RegisterOk", "LoginOk", "SendAck", "Message", "Page", "ConversationInfo",
    "ConversationList", "Kicked", "Error",
    "REQUEST_BODIES", "encode", "decode",
    "MAX_CONTENT", "MAX_PAGE", "MAX_CONVERSATIONS", "MAX_SEQ", "Conversations",
]

MAX_CONTENT = 32 * 1024  # characters of message content
MAX_PAGE = 200  # messages per sync/history page
MAX_CONVERSATIONS = 500  # conversations per CONVERSATIONS page: 500 always fit in one frame
MAX_SEQ = 2**63 - 1

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+\Z")]
Password = Annotated[str, msgspec.Meta(min_length=6, max_length=128)]
Terminal = Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=r"^[a-z0-9_-]+\Z")]
ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ConvId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]


class _Body(msgspec.Struct):
    """Base of every body: a MessagePack map keyed by field name."""


# -- requests -------------------------------------------------------------------------------

class Empty(_Body):
    """Body of PING and LOGOUT: nothing (zero bytes or an empty map)."""


class Register(_Body):
    username: Username
    password: Password
    nickname: Annotated[str, msgspec.Meta(max_length=64)] = ""


class Login(_Body):
    username: Username
    password: Password
    terminal: Terminal


class TokenLogin(_Body):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    terminal: Terminal


class Send(_Body):
    """Send to the user in the header's ``target`` field."""

    cmid: ClientMsgId
    content: Annotated[str, msgspec.Meta(max_length=MAX_CONTENT)]
    type: Annotated[int, msgspec.Meta(ge=1, le=255)] = 1

    def __post_init__(self) -> None:
        # the bound is on UTF-8 bytes too, so that any stored message fits in one frame
        if len(self.content) > MAX_CONTENT // 4 and len(self.content.encode()) > MAX_CONTENT:
            raise ValueError(f"content is over {MAX_CONTENT} bytes in UTF-8")


class Sync(_Body):
    conv: ConvId
    after_seq: Seq = 0
    limit: Limit = 100


class Conversations(_Body):
    offset: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)] = 0
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONVERSATIONS)] = 100


class History(_Body):
    conv: ConvId
    before_seq: Seq = 0  # 0 means "from the newest"
    limit: Limit = 50


# -- replies and pushes -----------------------------------------------------------------------

class RegisterOk(_Body):
    user_id: int


class LoginOk(_Body):
    user_id: int
    token: str
    expires_at: int  # unix seconds
    terminal: str
    node: str


class SendAck(_Body):
    cmid: str
    msg_id: int
    conv: str
    seq: int
    ts: int  # server time, unix milliseconds


class Message(_Body, rename={"sender": "from"}):
    """A stored message: the body of MSG_PUSH and the items of a page."""

    id: int
    conv: str
    seq: int
    sender: int
    to: int
    cmid: str
    type: int
    content: str
    ts: int


class Page(_Body):
    conv: str
    msgs: list[Message]
    has_more: bool


class ConversationInfo(_Body):
    conv: str
    peer: int
    last_seq: int
    last_ts: int


class ConversationList(_Body):
    convs: list[ConversationInfo]
    has_more: bool


class Kicked(_Body):
    reason: str
    terminal: str


class Error(_Body):
    code: int
    message: str


# -- codec helpers ----------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
_EMPTY_MAP = b"\x80"
_decoders: dict[type, msgspec.msgpack.Decoder[Any]] = {}


def encode(body: msgspec.Struct | None) -> bytes:
    """Encode a body; ``None`` gives the zero-length body."""
    return b"" if body is None else _encoder.encode(body)


def decode(data: bytes | memoryview, kind: type[msgspec.Struct]) -> Any:
    """Decode a body as ``kind``; raises ``msgspec.DecodeError`` (incl. ValidationError)."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    try:
        return decoder.decode(data if len(data) else _EMPTY_MAP)
    except (UnicodeDecodeError, RecursionError) as exc:
        # invalid UTF-8 in a str, or nesting too deep for the decoder: still a bad body
        raise msgspec.DecodeError(f"{type(exc).__name__}: {exc}") from None


#: Which Struct each request op carries.
REQUEST_BODIES: dict[int, type[msgspec.Struct]] = {
    Op.PING: Empty,
    Op.REGISTER: Register,
    Op.LOGIN: Login,
    Op.TOKEN_LOGIN: TokenLogin,
    Op.LOGOUT: Empty,
    Op.SEND: Send,
    Op.SYNC: Sync,
    Op.HISTORY: History,
    Op.CONVERSATIONS: Conversations,
}
