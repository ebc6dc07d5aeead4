"""Frame bodies of protocol v1: MessagePack maps, typed with msgspec.

One Struct per body; the field names are the map keys of docs/protocol.md. Unknown
keys are ignored (forward compatibility); a missing required key, a wrong type or a
value outside its bounds is a ``BAD_BODY`` error. An empty body decodes as an empty map.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from . import content
from .protocol import REQUEST_OPS, Op

__all__ = [
    "Empty", "Register", "Login", "TokenLogin", "Send", "Sync", "History", "Conversations",
    "ConvSet", "Read", "Readers", "Recall", "Search", "SearchPage", "UserRef", "FriendRequest", "FriendRemark", "ListPage",
    "UserFind", "UserIds", "UserProfile", "UserProfiles",
    "GroupCreate", "GroupRef", "GroupJoinRequests", "GroupUpdate", "GroupMembers", "GroupUsers", "GroupJoin",
    "GroupApprove", "GroupUser", "GroupSetRole", "GroupMute", "GroupMuteAll", "RegisterOk",
    "LoginOk", "SendAck", "Message", "Page", "ConversationInfo", "ConversationList",
    "ConvState", "ReadMark", "ReadersPage", "FriendInfo", "FriendList", "FriendRequestInfo",
    "FriendRequestList", "BlockList", "GroupInfo", "GroupList", "MemberInfo", "MemberList",
    "GroupUsersDone", "JoinResult", "JoinRequestList", "Kicked", "FriendEvent",
    "GroupEvent", "Error", "GroupCreated", "InvitationInfo", "InvitationList", "GroupAdd", "GROUP_ADD_RULES",
    # rich messaging
    "CallInvite", "CallRef", "CallAnswer", "CallIce", "Typing", "PresenceUsers", "Settings", "CallStarted",
    "TerminalInfo", "UserPresence", "PresenceList", "UserSettings", "TypingEvent", "CallEvent",
    "MAX_SDP", "MAX_ICE",
    # files
    "FileUpload", "FileDownload", "HttpHeader", "FileUploadOk", "FileDownloadOk", "MAX_FILE_KEY",
    # replies and edits
    "Edit", "Reply",
    # accounts and profiles
    "ProfileSet", "PasswordChange", "AccountDelete", "PasswordChanged", "MAX_BIO", "MAX_AVATAR",
    # reactions and forwards
    "React", "Reaction", "MessageReactions", "ReactionEvent", "Forward", "ForwardOk", "MAX_EMOJI_BYTES", "MAX_FORWARD",
    # per-user views and message pins
    "DeleteForMe", "ClearHistory", "MessageRef", "ConvRef", "ViewEvent", "PinInfo", "PinList", "PinEvent",
    "MAX_DELETE",
    "OPS", "PUSHES", "REQUEST_BODIES", "REQUEST_DECODERS", "EMPTY_MAP", "encode", "decode",
    "MAX_CONTENT", "MAX_MENTIONS", "MAX_PAGE", "MAX_LIST", "MAX_USERS", "MAX_PROFILES", "MAX_SEQ", "MAX_ID",
]

MAX_CONTENT = content.MAX_CONTENT  # characters (and UTF-8 bytes) of a message content
MAX_PAGE = 200  # messages per sync/history page
MAX_SEQ = 2**63 - 1
MAX_ID = 2**63 - 1  # user and group ids are signed 64-bit in every store
MAX_LIST = 500  # items per list page (conversations, friends, groups, members, readers)
MAX_USERS = 500  # user ids in one GROUP_CREATE or GROUP_INVITE
MAX_PROFILES = 100  # user ids in one USERS
MAX_MENTIONS = 100  # user ids mentioned by one message

Username = Annotated[str, msgspec.Meta(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+\Z")]
Password = Annotated[str, msgspec.Meta(min_length=6, max_length=128)]
Terminal = Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=r"^[a-z0-9_-]+\Z")]
ClientMsgId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ConvId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_PAGE)]
ListLimit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST)]
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
Cursor = Annotated[str, msgspec.Meta(max_length=128)]
Note = Annotated[str, msgspec.Meta(max_length=256)]
GroupName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Avatar = Annotated[str, msgspec.Meta(max_length=512)]
Notice = Annotated[str, msgspec.Meta(max_length=2048)]
JoinMode = Literal["open", "approval"]
#: who may add a user to a group (SETTINGS ``group_add``): anyone, their friends, nobody
#: (the others' adds become invitations the user accepts or declines)
GroupAdd = Literal["anyone", "friends", "nobody"]
GROUP_ADD_RULES = ("anyone", "friends", "nobody")


class _Body(msgspec.Struct, gc=False):
    """Base of every body: a MessagePack map keyed by field name. Not tracked by the
    collector (``gc=False``, inherited): a body is a tree of values, decoded or built for
    one frame, never part of a reference cycle."""


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


class Send(_Body, omit_defaults=True):
    """Send to the user (or, with flag GROUP, the group) in the header's ``target`` field.
    ``content`` is a string for text (type 1) and a map of its type's schema otherwise
    (core_ext/content.py); ``mentions`` and ``mention_all`` are for group messages."""

    cmid: ClientMsgId
    content: Annotated[str, msgspec.Meta(max_length=MAX_CONTENT)] | dict[str, Any]
    type: Annotated[int, msgspec.Meta(ge=1, le=255)] = 1
    mentions: Annotated[list[Id], msgspec.Meta(max_length=MAX_MENTIONS)] = []
    mention_all: bool = False
    #: a reply: the id of the earlier message of the same conversation it quotes (0: none)
    reply_to: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)] = 0

    def __post_init__(self) -> None:
        # the bound is on UTF-8 bytes (or the map's JSON) too, so a stored message fits a
        # frame; a short text (nearly every SEND) has nothing to check, and no call is made
        if self.type != content.TEXT or type(self.content) is not str or len(self.content) > content.SHORT_TEXT:
            content.check(self.type, self.content)


class Edit(_Body):
    """Replace the text of message ``seq`` of ``conv`` (the caller's own text message,
    within the node's edit window) with ``content``."""

    conv: ConvId
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CONTENT)]

    def __post_init__(self) -> None:
        content.check(content.TEXT, self.content)


class Recall(_Body):
    conv: ConvId
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]


class Search(_Body):
    """Messages of the caller's own conversations whose text contains ``query``, newest
    first; ``before`` is a message id from an earlier page (0: from the newest)."""

    query: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    conv: Annotated[str, msgspec.Meta(max_length=64)] = ""  # "": every conversation
    before: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)] = 0
    limit: Limit = 20


class Sync(_Body):
    """``changes_after`` (optional): the change revision the client is current up to in
    ``conv`` (``Page.rev`` of its previous such SYNC; 0 the first time); the page then also
    lists, in ``changed``, the messages up to ``after_seq`` changed in place since (edited,
    their reactions changed, recalled: docs/protocol.md section 9.25.3)."""

    conv: ConvId
    after_seq: Seq = 0
    limit: Limit = 100
    changes_after: Seq | None = None


class History(_Body):
    conv: ConvId
    before_seq: Seq = 0  # 0 means "from the newest"
    limit: Limit = 50


class Conversations(_Body):
    cursor: Cursor = ""  # "" = from the top; else a next_cursor of an earlier page
    limit: ListLimit = 100


class ConvSet(_Body):
    """Change the caller's own view of a conversation; an absent key is left as it is."""

    conv: ConvId
    pinned: bool | None = None
    muted: bool | None = None
    hidden: bool | None = None


class Read(_Body):
    conv: ConvId
    seq: Seq


class Readers(_Body):
    conv: ConvId
    seq: Seq
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)] = 0
    limit: ListLimit = 100


class UserRef(_Body):
    user: Id


class FriendRequest(_Body):
    user: Id
    message: Note = ""


class FriendRemark(_Body):
    user: Id
    remark: Annotated[str, msgspec.Meta(max_length=64)]


class ListPage(_Body):
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)] = 0
    limit: ListLimit = 100


class GroupCreate(_Body):
    name: GroupName
    members: Annotated[list[Id], msgspec.Meta(max_length=MAX_USERS)] = []
    avatar: Avatar = ""
    notice: Notice = ""
    join_mode: JoinMode = "approval"


class GroupRef(_Body):
    group: Id


class GroupJoinRequests(_Body):
    """GROUP_JOIN_REQUESTS: ``after`` and ``limit`` page as ``ListPage`` does. A body with
    ``group`` alone, as clients sent it before this list was paged, asks for the first page,
    as long as the frame allows: they had the whole list."""

    group: Id
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)] = 0
    limit: ListLimit = MAX_LIST


class GroupUpdate(_Body):
    """Admins change name, avatar and notice; only the owner changes join_mode. An
    absent key is left as it is."""

    group: Id
    name: GroupName | None = None
    avatar: Avatar | None = None
    notice: Notice | None = None
    join_mode: JoinMode | None = None


class UserFind(_Body):
    username: Username


class UserIds(_Body):
    users: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_PROFILES)]


class GroupMembers(_Body):
    group: Id
    after: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)] = 0
    limit: ListLimit = 100


class GroupUsers(_Body):
    group: Id
    users: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_USERS)]


class GroupJoin(_Body):
    group: Id
    message: Note = ""


class GroupApprove(_Body):
    group: Id
    user: Id
    accept: bool


class GroupUser(_Body):
    group: Id
    user: Id


class GroupSetRole(_Body):
    group: Id
    user: Id
    role: Literal["admin", "member"]


class GroupMute(_Body):
    group: Id
    user: Id
    until: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]  # unix ms; 0 lifts the mute


class GroupMuteAll(_Body):
    group: Id
    muted: bool


# -- replies and pushes -----------------------------------------------------------------------

class RegisterOk(_Body):
    user_id: int


class UserProfile(_Body):
    """What anyone logged in may see of an account: the items of USERS_OK, the reply of
    USER_FIND and PROFILE_SET, the body of PROFILE_PUSH. A deleted account shows
    ``deleted`` true, the nickname "Deleted user" and no avatar or bio."""

    user: int
    username: str
    nickname: str
    avatar: str = ""  # "", a file key (FILE_DOWNLOAD gives its URL) or an https URL
    bio: str = ""
    deleted: bool = False


class UserProfiles(_Body):
    users: list[UserProfile]


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


class Reply(_Body, rename={"sender": "from"}):
    """What a reply quotes: the quoted message's id, seq, sender and type, and the start
    of its text (at most the node's ``reply_snippet`` characters); a recalled one has
    ``recalled`` true and no snippet."""

    id: int
    seq: int
    sender: int
    type: int
    snippet: str
    recalled: bool


class Message(_Body, rename={"sender": "from"}, omit_defaults=True):
    """A stored message: the body of MSG_PUSH and RECALL_PUSH and the items of a page. The
    keys after ``ts`` are left out when they hold their default."""

    id: int
    conv: str
    seq: int
    sender: int
    to: int
    cmid: str
    type: int
    content: str | dict[str, Any]
    ts: int
    mentions: list[int] = []
    mention_all: bool = False
    recalled_by: int = 0  # a recalled message (a tombstone): its content is gone
    recalled_at: int = 0
    #: in a page only: the stored content cannot fit a frame (stored before contents were
    #: bounded by their MessagePack size), so it is left out ("")
    too_large: bool = False
    reply: Reply | None = None  # a reply: the message it quotes
    edited_at: int = 0  # unix ms of the latest edit; 0: never edited
    #: the conversation's change revision at this message's last change in place (an edit,
    #: a change of its reactions, its recall; see SYNC's changes_after); 0: never changed
    rev: int = 0
    #: a copy made by FORWARD: the original sender's id, or -1 when the forwarder chose
    #: not to name them; 0: not forwarded
    forwarded_from: int = 0
    #: in a page only: the reader deleted this message for themselves (DELETE_FOR_ME): a
    #: stub, its content and mentions left out
    hidden: bool = False


class Reaction(_Body):
    """One emoji on one message: how many reacted with it, and the first of them."""

    emoji: str
    count: int
    users: list[int]  # the first REACTION_USERS_SHOWN (10) who reacted, oldest first


class SearchPage(_Body):
    msgs: list[Message]
    has_more: bool


class MessageReactions(_Body):
    """The reactions of message ``seq``, as of revision ``rev`` of its conversation."""

    seq: int
    rev: int
    reactions: list[Reaction]  # empty: every reaction was taken back (or the message recalled)


class Page(_Body, omit_defaults=True):
    """SYNC and HISTORY, each key after ``has_more`` left out when it holds its default.
    ``reactions``: those of the page's messages (``msgs`` and ``changed``) that have any,
    or had some. The keys after it come with a SYNC that set ``changes_after``: ``changed``
    the messages up to ``after_seq`` changed in place since (edited, their reactions
    changed, recalled), as they are now, each once, by revision, ``rev`` the revision
    ``changed`` is complete up to, ``changes_more`` whether more changes follow (ask again
    with ``changes_after`` = ``rev``)."""

    conv: str
    msgs: list[Message]
    has_more: bool
    reactions: list[MessageReactions] = []
    changed: list[Message] = []
    rev: int = 0
    changes_more: bool = False


class ConversationInfo(_Body):
    conv: str
    kind: str  # "private" | "group"
    peer: int  # private: the other user; group: 0
    group: int  # group: its id; private: 0
    name: str  # group: its name; private: ""
    last_seq: int
    last_ts: int
    last_from: int
    last_type: int
    last_text: str  # the start of the newest message's content
    unread: int
    read_seq: int
    pinned: bool
    muted: bool
    mentioned: bool = False  # the caller was mentioned in a message they have not read
    last_recalled: bool = False  # the newest message was recalled (last_text is empty)
    #: the caller cleared their view of the conversation up to this seq (CLEAR_HISTORY)
    cleared_seq: int = 0
    #: grows each time the caller deletes messages for themselves or clears the history
    #: here: a device that knew another value reads again what it holds (section 9.23)
    view_ver: int = 0


class ConversationList(_Body):
    convs: list[ConversationInfo]
    next_cursor: str
    has_more: bool


class ConvState(_Body):
    conv: str
    pinned: bool
    muted: bool
    hidden: bool


class ReadMark(_Body):
    conv: str
    user: int
    seq: int


class ReadersPage(_Body):
    conv: str
    seq: int
    count: int
    users: list[int]
    has_more: bool


class FriendInfo(_Body):
    user: int
    remark: str
    since: int


class FriendList(_Body):
    friends: list[FriendInfo]
    has_more: bool


class FriendRequestInfo(_Body):
    user: int
    message: str
    ts: int


class FriendRequestList(_Body):
    requests: list[FriendRequestInfo]
    has_more: bool


class BlockList(_Body):
    users: list[int]
    has_more: bool


class GroupInfo(_Body):
    group: int
    name: str
    avatar: str
    notice: str
    owner: int
    join_mode: str
    mute_all: bool
    members: int
    max_members: int
    created_at: int
    role: str  # the caller's role: "owner" | "admin" | "member" | "" (not a member)


class GroupList(_Body):
    groups: list[GroupInfo]
    has_more: bool


class MemberInfo(_Body):
    user: int
    role: str
    muted_until: int
    joined_at: int


class MemberList(_Body):
    group: int
    members: list[MemberInfo]
    has_more: bool


class GroupUsersDone(_Body):
    group: int
    users: list[int]  # added: members now
    #: invited: their GROUP_ADD setting did not let the caller add them; each has a pending
    #: invitation to accept or decline (GROUP_INVITATIONS)
    invited: list[int] = []


class GroupCreated(GroupInfo):
    """GROUP_CREATE_OK: the new group's ``GroupInfo`` and what became of the members asked for."""

    added: list[int] = []  # members now, besides the caller
    invited: list[int] = []  # sent an invitation instead (as GroupUsersDone.invited)


class InvitationInfo(_Body):
    group: int
    inviter: int
    ts: int  # unix ms
    expires_at: int  # unix ms: gone (not listed, not acceptable) from then on


class InvitationList(_Body):
    invitations: list[InvitationInfo]
    has_more: bool


class JoinResult(_Body):
    group: int
    status: str  # "joined" | "pending"


class JoinRequestList(_Body):
    group: int
    requests: list[FriendRequestInfo]
    has_more: bool = False


class Kicked(_Body):
    reason: str
    terminal: str


class FriendEvent(_Body):
    event: str  # "request" | "accepted" | "deleted"
    user: int
    message: str
    ts: int


class GroupEvent(_Body):
    event: str
    group: int
    actor: int
    users: list[int]
    role: str
    until: int
    ts: int


class Error(_Body):
    code: int
    message: str


# -- rich messaging: calls, typing, presence, settings -----------------------------------------

MAX_SDP = 16 * 1024  # characters of an SDP offer or answer
MAX_ICE = 2048  # characters of one ICE candidate
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SDP)]


class CallInvite(_Body):
    """Ring every online device of ``to`` with the caller's SDP offer (1:1 calls only)."""

    to: Id
    kind: Literal["audio", "video"]
    sdp: Sdp


class CallRef(_Body):
    call: Id


class CallAnswer(_Body):
    """Accept a ringing call on this device, with its SDP answer."""

    call: Id
    sdp: Sdp


class CallIce(_Body):
    """One ICE candidate for the other device of the call ("" ends the candidates)."""

    call: Id
    candidate: Annotated[str, msgspec.Meta(max_length=MAX_ICE)]


class Typing(_Body):
    conv: ConvId
    typing: bool = True  # False: stopped typing


class PresenceUsers(_Body):
    users: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=MAX_USERS)]


class Settings(_Body):
    """Change the caller's own settings; an absent key is left as it is (an empty body
    reads them)."""

    invisible: bool | None = None
    #: who may add the caller to a group; the others' adds become invitations
    group_add: GroupAdd | None = None


class CallStarted(_Body):
    call: int
    ts: int  # unix ms


class TerminalInfo(_Body):
    terminal: str


class UserPresence(_Body):
    """A user's presence: the items of PRESENCE_OK and the body of PRESENCE_PUSH."""

    user: int
    online: bool
    terminals: list[TerminalInfo]  # the terminals online, by name; empty when offline


class PresenceList(_Body):
    users: list[UserPresence]


class UserSettings(_Body):
    invisible: bool
    #: the caller's GROUP_ADD rule in force (the node's default until they choose one)
    group_add: str = "friends"


class TypingEvent(_Body):
    conv: str
    user: int
    typing: bool
    ts: int


class CallEvent(_Body):
    """The body of CALL_PUSH: what happened to a call (``event``) and what goes with it."""

    event: str  # ring | accepted | answered_elsewhere | rejected | cancelled | hangup | ice | timeout
    call: int
    caller: int
    callee: int
    kind: str  # "audio" | "video"
    terminal: str  # the device that acted (the one that accepted, rejected, hung up, sent the candidate)
    sdp: str  # ring: the offer; accepted: the answer; else ""
    candidate: str  # ice: the candidate; else ""
    duration_ms: int  # hangup: since the call was accepted; else 0
    ts: int


# -- files: FILE_UPLOAD, FILE_DOWNLOAD (services/files.py) -------------------------------------

MAX_FILE_KEY = 512  # characters of a file key
Mime = Annotated[str, msgspec.Meta(
    min_length=3, max_length=127, pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*\Z")]


class FileUpload(_Body):
    """Ask for a URL to upload one file of ``size`` bytes and type ``mime`` to ``conv``."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    size: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
    mime: Mime
    conv: ConvId


class FileDownload(_Body):
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_FILE_KEY)]


class HttpHeader(_Body):
    name: str
    value: str


class FileUploadOk(_Body):
    key: str
    url: str
    headers: list[HttpHeader]
    expires_at: int  # unix seconds


class FileDownloadOk(_Body):
    key: str
    url: str
    expires_at: int  # unix seconds
    name: str
    size: int
    mime: str


# -- accounts and profiles: PROFILE_SET, PASSWORD_CHANGE, ACCOUNT_DELETE ------------------------

MAX_BIO = 1024  # characters of a bio at most, whatever the node's own limit (profile_bio_max)
MAX_AVATAR = 1024  # characters of an avatar reference


class ProfileSet(_Body):
    """Change the caller's own profile; an absent key is left as it is. ``avatar``: "" (none),
    a file key of the caller's avatar space (FILE_UPLOAD to conv ``a<user id>``) or an
    https URL."""

    nickname: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    avatar: Annotated[str, msgspec.Meta(max_length=MAX_AVATAR)] | None = None
    bio: Annotated[str, msgspec.Meta(max_length=MAX_BIO)] | None = None


class PasswordChange(_Body):
    old_password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    new_password: Password


class PasswordChanged(_Body):
    """The caller's session stays, with this new token (every older one is refused)."""

    token: str
    expires_at: int  # unix seconds
    closed: int  # the account's other sessions that were closed


class AccountDelete(_Body):
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# -- reactions and forwards: REACT, FORWARD, REACTION_PUSH -----------------------------------

MAX_EMOJI_BYTES = 32  # UTF-8 bytes of one reaction's emoji (a flag or a family is ~25)
MAX_FORWARD = 100  # messages one FORWARD may name (the node's forward_max may be lower)
Emoji = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EMOJI_BYTES)]


class React(_Body):
    """Add (or, with ``remove``, take back) the caller's reaction ``emoji`` to message
    ``seq`` of ``conv``."""

    conv: ConvId
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]
    emoji: Emoji
    remove: bool = False

    def __post_init__(self) -> None:
        _check_emoji(self.emoji)


def _check_emoji(emoji: str) -> None:
    """A short emoji: at most MAX_EMOJI_BYTES of UTF-8, no whitespace, no control or ASCII
    letter or digit (a reaction is a symbol, not a word)."""
    if len(emoji.encode()) > MAX_EMOJI_BYTES:
        raise ValueError(f"emoji: at most {MAX_EMOJI_BYTES} bytes of UTF-8")
    for ch in emoji:
        if ch.isspace() or ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0 or (ch.isascii() and ch.isalnum()):
            raise ValueError("emoji: one emoji, not text (no letters, digits, spaces or control characters)")


class ReactionEvent(_Body):
    """REACT_OK and REACTION_PUSH: who added (``added``) or removed which emoji on which
    message, and the message's reactions now."""

    conv: str
    seq: int
    msg_id: int
    user: int
    emoji: str
    added: bool
    reactions: list[Reaction]
    rev: int  # the conversation's change revision of this change (SYNC ``changes_after``)
    ts: int  # unix ms


class Forward(_Body):
    """Forward messages ``seqs`` of ``conv`` to the user (or, with flag GROUP, the group)
    in the header's ``target``, as new messages sent by the caller, in the order given.
    ``cmid`` names the forward: message i is stored with cmid ``<cmid>/<i>`` (a retry
    with the same cmid stores nothing twice)."""

    conv: ConvId
    seqs: Annotated[list[Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]], msgspec.Meta(min_length=1, max_length=MAX_FORWARD)]
    cmid: Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
    hide_sender: bool = False  # True: the copies do not name the original senders


class ForwardOk(_Body):
    acks: list[SendAck]  # one per message forwarded, in the order of ``seqs``


# -- per-user views and message pins (services/views.py) ---------------------------------------

MAX_DELETE = 100  # seqs in one DELETE_FOR_ME
MsgSeq = Annotated[int, msgspec.Meta(ge=1, le=MAX_SEQ)]


class DeleteForMe(_Body):
    """Hide messages of ``conv`` from the caller's own view, on every device of theirs."""

    conv: ConvId
    seqs: Annotated[list[MsgSeq], msgspec.Meta(min_length=1, max_length=MAX_DELETE)]


class ClearHistory(_Body):
    """Clear the caller's own view of ``conv`` up to ``seq`` (0: up to its newest message)."""

    conv: ConvId
    seq: Seq = 0


class MessageRef(_Body):
    """One message: PIN_MESSAGE and UNPIN_MESSAGE."""

    conv: ConvId
    seq: MsgSeq


class ConvRef(_Body):
    conv: ConvId


class ViewEvent(_Body):
    """The reply to DELETE_FOR_ME and CLEAR_HISTORY, and the body of VIEW_PUSH (to the
    user's other devices): what changed in the user's own view of ``conv``."""

    conv: str
    event: str  # "deleted" | "cleared"
    seqs: list[int]  # deleted: the messages now hidden; cleared: []
    cleared_seq: int  # the messages up to this seq are cleared from the user's view
    view_ver: int  # ConversationInfo.view_ver after the change


class PinInfo(_Body):
    """A message pin: the reply to PIN_MESSAGE and the items of PINS_OK."""

    conv: str
    seq: int
    by: int  # who pinned it
    ts: int  # when, unix ms
    message: Message


class PinList(_Body):
    conv: str
    pins: list[PinInfo]  # newest pin first
    max: int  # how many message pins the conversation may hold


class PinEvent(_Body):
    """The body of PIN_PUSH: a message of ``conv`` was pinned or unpinned (by a member, or
    by its recall: ``event`` "unpinned", ``by`` the one who recalled it)."""

    event: str  # "pinned" | "unpinned"
    conv: str
    seq: int
    by: int
    ts: int  # unix ms


# -- codec helpers ----------------------------------------------------------------------------

_encoder = msgspec.msgpack.Encoder()
EMPTY_MAP = b"\x80"  # an empty body decodes as this
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
        return decoder.decode(data if len(data) else EMPTY_MAP)
    except (UnicodeDecodeError, RecursionError) as exc:
        # invalid UTF-8 in a str, or nesting too deep for the decoder: still a bad body
        raise msgspec.DecodeError(f"{type(exc).__name__}: {exc}") from None


#: The one declaration per op: request op -> (request body, reply body); push op -> body.
#: The reply op is ``request | RESPONSE_BIT``; everything else (the codec's request set,
#: the session's handler table, the doc check) is derived from these two tables.
OPS: dict[Op, tuple[type[msgspec.Struct], type[msgspec.Struct]]] = {
    Op.PING: (Empty, Empty),
    Op.REGISTER: (Register, RegisterOk),
    Op.LOGIN: (Login, LoginOk),
    Op.TOKEN_LOGIN: (TokenLogin, LoginOk),
    Op.LOGOUT: (Empty, Empty),
    Op.USER_FIND: (UserFind, UserProfile),
    Op.USERS: (UserIds, UserProfiles),
    Op.SEND: (Send, SendAck),
    Op.SYNC: (Sync, Page),
    Op.HISTORY: (History, Page),
    Op.CONVERSATIONS: (Conversations, ConversationList),
    Op.CONV_SET: (ConvSet, ConvState),
    Op.READ: (Read, ReadMark),
    Op.READERS: (Readers, ReadersPage),
    Op.RECALL: (Recall, Message),
    Op.SEARCH: (Search, SearchPage),
    Op.FRIEND_REQUEST: (FriendRequest, Empty),
    Op.FRIEND_ACCEPT: (UserRef, Empty),
    Op.FRIEND_REJECT: (UserRef, Empty),
    Op.FRIEND_DELETE: (UserRef, Empty),
    Op.FRIENDS: (ListPage, FriendList),
    Op.FRIEND_REQUESTS: (ListPage, FriendRequestList),
    Op.FRIEND_REMARK: (FriendRemark, Empty),
    Op.BLOCK: (UserRef, Empty),
    Op.UNBLOCK: (UserRef, Empty),
    Op.BLOCKS: (ListPage, BlockList),
    Op.GROUP_CREATE: (GroupCreate, GroupCreated),
    Op.GROUP_DISSOLVE: (GroupRef, Empty),
    Op.GROUP_UPDATE: (GroupUpdate, GroupInfo),
    Op.GROUP_INFO: (GroupRef, GroupInfo),
    Op.GROUPS: (ListPage, GroupList),
    Op.GROUP_MEMBERS: (GroupMembers, MemberList),
    Op.GROUP_INVITE: (GroupUsers, GroupUsersDone),
    Op.GROUP_JOIN: (GroupJoin, JoinResult),
    Op.GROUP_JOIN_REQUESTS: (GroupJoinRequests, JoinRequestList),
    Op.GROUP_APPROVE: (GroupApprove, Empty),
    Op.GROUP_QUIT: (GroupRef, Empty),
    Op.GROUP_KICK: (GroupUser, Empty),
    Op.GROUP_SET_ROLE: (GroupSetRole, Empty),
    Op.GROUP_TRANSFER: (GroupUser, Empty),
    Op.GROUP_MUTE: (GroupMute, Empty),
    Op.GROUP_MUTE_ALL: (GroupMuteAll, Empty),
    Op.GROUP_INVITATIONS: (ListPage, InvitationList),
    Op.GROUP_INVITATION_ACCEPT: (GroupRef, GroupInfo),
    Op.GROUP_INVITATION_DECLINE: (GroupRef, Empty),
    # rich messaging
    Op.CALL_INVITE: (CallInvite, CallStarted),
    Op.CALL_ACCEPT: (CallAnswer, Empty),
    Op.CALL_REJECT: (CallRef, Empty),
    Op.CALL_CANCEL: (CallRef, Empty),
    Op.CALL_HANGUP: (CallRef, Empty),
    Op.CALL_ICE: (CallIce, Empty),
    Op.TYPING: (Typing, Empty),
    Op.PRESENCE: (PresenceUsers, PresenceList),
    Op.PRESENCE_SUBSCRIBE: (PresenceUsers, PresenceList),
    Op.PRESENCE_UNSUBSCRIBE: (PresenceUsers, Empty),
    Op.SETTINGS: (Settings, UserSettings),
    # files
    Op.FILE_UPLOAD: (FileUpload, FileUploadOk),
    Op.FILE_DOWNLOAD: (FileDownload, FileDownloadOk),
    # replies and edits
    Op.EDIT: (Edit, Message),
    # accounts and profiles
    Op.PROFILE_SET: (ProfileSet, UserProfile),
    Op.PASSWORD_CHANGE: (PasswordChange, PasswordChanged),
    Op.ACCOUNT_DELETE: (AccountDelete, Empty),
    # reactions and forwards
    Op.REACT: (React, ReactionEvent),
    Op.FORWARD: (Forward, ForwardOk),
    # per-user views and message pins
    Op.DELETE_FOR_ME: (DeleteForMe, ViewEvent),
    Op.CLEAR_HISTORY: (ClearHistory, ViewEvent),
    Op.PIN_MESSAGE: (MessageRef, PinInfo),
    Op.UNPIN_MESSAGE: (MessageRef, Empty),
    Op.PINS: (ConvRef, PinList),
}
PUSHES: dict[Op, type[msgspec.Struct]] = {
    Op.MSG_PUSH: Message,
    Op.KICKED: Kicked,
    Op.FRIEND_PUSH: FriendEvent,
    Op.GROUP_PUSH: GroupEvent,
    Op.READ_PUSH: ReadMark,
    Op.CONV_PUSH: ConvState,
    Op.RECALL_PUSH: Message,
    Op.TYPING_PUSH: TypingEvent,
    Op.PRESENCE_PUSH: UserPresence,
    Op.CALL_PUSH: CallEvent,
    Op.EDIT_PUSH: Message,
    Op.PROFILE_PUSH: UserProfile,
    Op.REACTION_PUSH: ReactionEvent,
    Op.PIN_PUSH: PinEvent,
    Op.VIEW_PUSH: ViewEvent,
}
#: Which Struct each request op carries.
REQUEST_BODIES: dict[int, type[msgspec.Struct]] = {op: request for op, (request, _) in OPS.items()}
#: request op -> the decoder of its body (the session decodes every request with these; an
#: empty body is decoded as an empty map, as ``decode`` does)
REQUEST_DECODERS: dict[int, msgspec.msgpack.Decoder[Any]] = {
    op: msgspec.msgpack.Decoder(request) for op, request in REQUEST_BODIES.items()
}

if set(OPS) != REQUEST_OPS:  # pragma: no cover - a declaration error, caught at import
    raise ImportError(f"bodies.OPS and protocol.REQUEST_OPS differ: {set(OPS) ^ REQUEST_OPS}")
