"""The backend contracts: store, routes, bus. Each is a small ``typing.Protocol`` with an
embedded default (SQLite, memory, in-process) and, later, a cluster implementation
(TiDB/MySQL, Redis, RocketMQ). One contract suite (tests/backends/) runs against every
implementation; the guarantees stated here are what that suite checks.

The records are frozen msgspec Structs, not dataclasses: several are built per message,
and a Struct is built about ten times faster than a frozen dataclass.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable, NewType, Protocol, Sequence

import msgspec

__all__ = [
    "UserId", "NodeId", "ConvId", "GroupId",
    "User", "NewMessage", "StoredMessage", "Route", "Envelope",
    "Friend", "FriendRequest", "UserConv", "UserRecords", "GroupRecord", "Member", "JoinRequest",
    "GroupRecords", "Change", "PutFriendRequest", "DropFriendRequest", "PutFriendship",
    "DropFriendship", "SetRemark", "SetBlock", "CreateGroup", "PutGroup", "PutMember",
    "DropMember", "DissolveGroup", "PutJoinRequest", "DropJoinRequest", "SetUserConv", "SetPasswordHash",
    "RevokeToken", "RecallMessage", "SetSettings", "CallRecord",
    # group invitations
    "Invitation", "PutInvitations", "DropInvitation", "InvitationsFull",
    # replies and edits
    "Quote", "EditMessage",
    # reactions and forwards
    "SetReaction", "Reacted", "ShareFiles", "reaction_summary",
    # per-user views and message pins
    "HideMessages", "PinMessage", "UnpinMessage", "Pin", "ViewHead", "PINS_FULL",
    # operations: the node registry, disabled accounts
    "NodeInfo", "SetDisabled",
    # accounts and profiles
    "SetProfile", "SetCredentials", "DeleteAccount",
    "Store", "Routes", "Bus",
    "UsernameTaken", "StoreClosed", "StoreDamaged", "StoreUnavailable", "SearchTimeout", "FileQuotaExceeded",
    # files
    "Files", "FileStat", "SignedUrl", "FilesUnavailable",
]

UserId = NewType("UserId", int)
NodeId = NewType("NodeId", str)
ConvId = NewType("ConvId", str)
GroupId = NewType("GroupId", int)


class UsernameTaken(Exception):
    """``Store.create_user`` was given a username that already exists."""


class StoreClosed(RuntimeError):
    """The store is not open: ``open()`` was not called, or ``close()`` was."""


class StoreDamaged(RuntimeError):
    """``open()`` found the stored data damaged (failed integrity check, a log that would
    lose committed writes); the message says what and what an operator can do."""


class StoreUnavailable(RuntimeError):
    """``open()`` cannot reach or open the store (permissions, a read-only disk, no
    server); the message says which."""


class SearchTimeout(RuntimeError):
    """``Store.search`` ran past its time bound (or its caller left): nothing was found
    in time. Another search (narrower, or later) may succeed."""


class InvitationsFull(Exception):
    """``PutInvitations`` (or ``CreateGroup`` with invitations) would take an invitee or
    the inviter past their bound of pending invitations; nothing of the change is stored.
    ``user`` is the invitee who is full, or the inviter."""

    def __init__(self, user: int, inviter: bool) -> None:
        super().__init__(f"{'you have' if inviter else f'user {user} has'} as many pending group invitations as allowed")
        self.user = user
        self.inviter = inviter


class User(msgspec.Struct, frozen=True):
    id: UserId
    username: str
    password_hash: str
    nickname: str
    created_at: int  # unix ms
    disabled: bool = False  # SetDisabled: its logins are refused
    avatar: str = ""  # "", a file key of the user's own avatar space, or an https URL (SetProfile)
    bio: str = ""
    #: the credential epoch: every token carries the one it was issued at, and TOKEN_LOGIN
    #: refuses a token of an older one (SetCredentials and DeleteAccount move it on)
    epoch: int = 0
    deleted_at: int = 0  # unix ms; 0: not deleted (DeleteAccount)

    @property
    def deleted(self) -> bool:
        return self.deleted_at != 0


#: ``gc=False`` on the records made for every message (Quote, NewMessage, StoredMessage,
#: UserConv): frozen, and made of scalars, tuples of ids and Quotes, so no reference cycle
#: can hold one. The collector does not track them: half the cost to make one (97 against
#: 187 ns for a StoredMessage here), and they do not count toward a young collection.
class Quote(msgspec.Struct, frozen=True, gc=False):
    """What a reply quotes, as its receivers see it: resolved by the services from the
    quoted message (never stored: a store keeps only ``reply_to``)."""

    id: int
    seq: int
    sender: int
    type: int
    snippet: str  # the start of the quoted text ("" when recalled)
    recalled: bool = False


class NewMessage(msgspec.Struct, frozen=True, gc=False):
    """A message as the sender's node accepted it, before it has a seq or an id."""

    conv: ConvId
    sender: UserId
    to: int  # receiver user (private conversation) or group id (group conversation)
    cmid: str  # client message id: (sender, cmid) is unique
    type: int
    content: str
    msg_id: int  # unique id proposed by the node (kept unless (sender, cmid) already exists)
    ts: int  # server time, unix ms
    #: users whose conversation lists gain ``conv`` at its first message (a private
    #: conversation's two users); group members enter theirs when they join
    members: tuple[UserId, ...] = ()
    #: who the message mentions: "" nobody, "*" every member, else user ids joined by ","
    #: (their ``UserConv.mention_seq`` moves to the message's seq in the same commit)
    mentions: str = ""
    #: a reply: the id of the message of ``conv`` it quotes (stored), and that message as
    #: the sender's node saw it (not stored: carried to the StoredMessage for the push)
    reply_to: int = 0
    quote: Quote | None = None
    #: a forwarded message: its original sender, or -1 when the forwarder hides them; 0: not forwarded
    fwd: int = 0


class StoredMessage(msgspec.Struct, frozen=True, gc=False):
    id: int
    conv: ConvId
    seq: int
    sender: UserId
    to: int
    cmid: str
    type: int
    content: str
    ts: int
    mentions: str = ""  # as in NewMessage
    recalled_by: int = 0  # a recalled message keeps its row with content "" (a tombstone)
    recalled_at: int = 0  # unix ms
    duplicate: bool = False  # True when (sender, cmid) was already stored: this is that row
    reply_to: int = 0  # a reply: the id of the message it quotes
    edited_at: int = 0  # unix ms of the latest edit (EditMessage); 0: never edited
    #: a reply's quoted message, when resolved (the push of a new reply; pages resolve it
    #: when they are read): never stored
    quote: Quote | None = None
    fwd: int = 0  # as in NewMessage
    #: the message's reactions (SetReaction), JSON ``[[emoji, count, [first users]], ...]``; "" none
    reactions: str = ""
    #: the conversation's change revision at this message's last change in place (an edit,
    #: a change of its reactions, its recall): 1, 2, 3, ... per conversation, in commit
    #: order, also across store instances; 0: never changed
    rev: int = 0


# -- the social graph and per-user state ------------------------------------------------------

class Friend(msgspec.Struct, frozen=True):
    user: UserId  # the friend
    remark: str  # the owner's note on this friend
    since: int  # unix ms


class FriendRequest(msgspec.Struct, frozen=True):
    sender: UserId
    receiver: UserId
    message: str
    ts: int


class UserConv(msgspec.Struct, frozen=True, gc=False):
    """One user's own state in one conversation: changes only when that user acts (reads,
    pins, mutes, hides, sends), never when others post."""

    conv: ConvId
    read_seq: int = 0  # every message up to this seq is read
    pinned: bool = False
    muted: bool = False
    hidden_seq: int = 0  # hidden until the conversation reaches this seq; 0: shown
    joined_seq: int = 0  # group: messages up to this seq predate the member
    #: the newest seq that mentions the user (written by the store with that message, the
    #: one field that changes without the user acting); mentioned while above read_seq
    mention_seq: int = 0
    #: the user cleared their view up to this seq (CLEAR_HISTORY): they read nothing at or
    #: below it, and it counts as read (unread follows) without moving read_seq
    cleared_seq: int = 0
    #: grows with each DELETE_FOR_ME (``HideMessages``) and CLEAR_HISTORY of the user here
    view_ver: int = 0


class ViewHead(msgspec.Struct, frozen=True):
    """What one user's list shows of ``conv`` while its newest message is ``head_seq``, a
    message the user deleted for themselves: ``message``, the newest they still see (None:
    none)."""

    conv: ConvId
    head_seq: int
    message: StoredMessage | None


class Pin(msgspec.Struct, frozen=True):
    """A message pin of a conversation (shared by its members)."""

    conv: ConvId
    seq: int
    by: UserId
    at: int  # unix ms
    message: StoredMessage
    #: PinMessage's result only: this request pinned it (False: it was pinned already)
    created: bool = False


class UserRecords(msgspec.Struct, frozen=True):
    """Everything about one user that a node keeps in memory while the user is online."""

    friends: list[Friend]
    requests_in: list[FriendRequest]  # pending, sent to this user
    requests_out: list[FriendRequest]  # pending, sent by this user
    blocked: list[UserId]  # users this user blocked
    blocked_by: list[UserId]  # users who blocked this user
    convs: list[UserConv]
    heads: list[StoredMessage]  # the newest message of each conversation in ``convs`` that has one
    invisible: bool = False  # the user's setting: others see them offline (SetSettings)
    #: the invitations to groups this user has pending (not expired), by group id
    invitations: list[Invitation] = []
    #: who may add this user to a group: "anyone" | "friends" | "nobody"; "" never chosen
    #: (the node's default applies) (SetSettings)
    group_add: str = ""
    #: (conv, seq) of the messages the user deleted for themselves (``HideMessages``) above
    #: their read cursor and cleared seq: their unread counts leave them out
    hidden: list[tuple[ConvId, int]] = []
    #: for each conversation whose newest message the user deleted for themselves, the
    #: newest one they still see
    view_heads: list[ViewHead] = []


class Invitation(msgspec.Struct, frozen=True):
    """A pending invitation of ``invitee`` into ``group`` by ``inviter``: the add that the
    invitee's group_add setting did not allow at once."""

    group: GroupId
    invitee: UserId
    inviter: UserId
    ts: int  # unix ms
    expires_at: int  # unix ms: past it, the invitation counts for nothing and may be deleted


class GroupRecord(msgspec.Struct, frozen=True):
    id: GroupId
    name: str
    avatar: str
    notice: str
    owner: UserId
    join_mode: str  # "open" | "approval"
    mute_all: bool
    max_members: int
    created_at: int  # unix ms


class Member(msgspec.Struct, frozen=True):
    user: UserId
    role: str  # "owner" | "admin" | "member"
    muted_until: int  # unix ms; 0: not muted
    joined_at: int  # unix ms
    joined_seq: int  # the group conversation's last seq when the member joined


class JoinRequest(msgspec.Struct, frozen=True):
    user: UserId
    message: str
    ts: int


class GroupRecords(msgspec.Struct, frozen=True):
    group: GroupRecord
    members: list[Member]
    requests: list[JoinRequest]
    head: StoredMessage | None = None  # the group conversation's newest message
    #: its pending invitations (not expired), by invitee id
    invitations: list[Invitation] = []


# -- changes: every write of the social graph, applied in order with the messages -------------

class PutFriendRequest(msgspec.Struct, frozen=True, tag=True):
    sender: UserId
    receiver: UserId
    message: str
    ts: int


class DropFriendRequest(msgspec.Struct, frozen=True, tag=True):
    sender: UserId
    receiver: UserId


class PutFriendship(msgspec.Struct, frozen=True, tag=True):
    """Both directions at once; pending requests between the two are dropped."""

    a: UserId
    b: UserId
    ts: int


class DropFriendship(msgspec.Struct, frozen=True, tag=True):
    a: UserId
    b: UserId


class SetRemark(msgspec.Struct, frozen=True, tag=True):
    user: UserId
    friend: UserId
    remark: str


class SetBlock(msgspec.Struct, frozen=True, tag=True):
    user: UserId
    other: UserId
    blocked: bool


class CreateGroup(msgspec.Struct, frozen=True, tag=True):
    """Result: the ``GroupRecords`` of the new group (the store picks its id)."""

    name: str
    avatar: str
    notice: str
    owner: UserId
    join_mode: str
    max_members: int
    members: list[UserId]  # besides the owner
    ts: int
    #: invitations stored with the group, as ``PutInvitations`` stores them (all or nothing:
    #: InvitationsFull leaves no group behind)
    invited: list[UserId] = []
    expires_at: int = 0
    max_per_invitee: int = 0
    max_per_inviter: int = 0


class PutGroup(msgspec.Struct, frozen=True, tag=True):
    """Replace the group's record (name, avatar, notice, owner, join mode, mute all)."""

    group: GroupRecord


class PutMember(msgspec.Struct, frozen=True, tag=True):
    """Add a member or change one. Result: the ``Member`` as stored; a new member's
    ``joined_seq`` is the group conversation's last seq at that moment."""

    group: GroupId
    user: UserId
    role: str
    muted_until: int
    ts: int


class DropMember(msgspec.Struct, frozen=True, tag=True):
    group: GroupId
    user: UserId


class DissolveGroup(msgspec.Struct, frozen=True, tag=True):
    """The group and every membership go; its messages stay stored but unreachable."""

    group: GroupId


class PutInvitations(msgspec.Struct, frozen=True, tag=True):
    """Invite ``invitees`` into ``group`` on behalf of ``inviter`` (an invitation already
    pending for the pair is replaced). All or nothing: if an invitee would hold more than
    ``max_per_invitee`` pending (unexpired) invitations, or the inviter would have sent more
    than ``max_per_inviter``, nothing is stored and it fails with ``InvitationsFull``
    (checked in the write's transaction, so concurrent writers cannot overshoot). Expired
    invitations of those users are deleted on the way. A ``PutMember`` of the pair, or the
    group's ``DissolveGroup``, drops the invitation."""

    group: GroupId
    inviter: UserId
    invitees: list[UserId]
    ts: int
    expires_at: int
    max_per_invitee: int
    max_per_inviter: int


class DropInvitation(msgspec.Struct, frozen=True, tag=True):
    group: GroupId
    invitee: UserId


class PutJoinRequest(msgspec.Struct, frozen=True, tag=True):
    group: GroupId
    user: UserId
    message: str
    ts: int


class DropJoinRequest(msgspec.Struct, frozen=True, tag=True):
    group: GroupId
    user: UserId


class SetUserConv(msgspec.Struct, frozen=True, tag=True):
    """Change the user's existing state in a conversation (the read cursor only forward).
    It never creates one: a user outside the conversation (removed meanwhile) has none."""

    user: UserId
    state: UserConv


class RecallMessage(msgspec.Struct, frozen=True, tag=True):
    """Make message ``seq`` of ``conv`` a tombstone: content "" and no mentions, who and
    when kept; its message pin, if any, goes with it. Resolves to the tombstone, or None
    when there is no such message or it was
    recalled already (the second of two racing recalls gets None)."""

    conv: ConvId
    seq: int
    by: UserId
    at: int  # unix ms


class EditMessage(msgspec.Struct, frozen=True, tag=True):
    """Replace the content of message ``seq`` of ``conv`` (sent by ``by``, not recalled)
    with ``content``; it gets ``edited_at = at`` and the conversation's next change
    revision (``StoredMessage.rev``), and
    the search finds the new text, not the old. Resolves to the edited message, or None
    when there is no such message of ``by`` or it was recalled (a recall that won a race)."""

    conv: ConvId
    seq: int
    by: UserId
    content: str
    at: int  # unix ms


class SetReaction(msgspec.Struct, frozen=True, tag=True):
    """Add (``add``) or take back ``user``'s reaction ``emoji`` on message ``seq`` of
    ``conv``, within the bounds: at most ``max_emoji`` distinct emoji on the message, at
    most ``max_per_user`` reactions of one user on it. A change takes the conversation's
    next change revision and stamps the message with it (``StoredMessage.rev``), with its
    new summary (``StoredMessage.reactions``). Resolves to ``Reacted``;
    a refusal or a no-op writes nothing."""

    conv: ConvId
    seq: int
    user: UserId
    emoji: str
    add: bool
    ts: int  # unix ms
    max_emoji: int
    max_per_user: int
    shown: int = 10  # users listed per emoji in the summary


class Reacted(msgspec.Struct, frozen=True):
    """What ``SetReaction`` did: ``outcome`` is "changed", "unchanged" (added again, or
    removed what was not there), "missing" (no such message), "recalled", "too_many_emoji"
    or "too_many_mine"; ``message`` the message as it is now (None when missing)."""

    outcome: str
    message: StoredMessage | None = None


def reaction_summary(rows: Any, shown: int) -> str:
    """The stored summary of a message's reactions from its (emoji, user) rows, oldest
    first: ``[[emoji, count, [first users]], ...]`` in the order each emoji came; "" none."""
    summary: dict[str, list[Any]] = {}
    for emoji, user in rows:
        entry = summary.get(emoji)
        if entry is None:
            entry = summary[emoji] = [emoji, 0, []]
        entry[1] += 1
        if len(entry[2]) < shown:
            entry[2].append(user)
    return json.dumps(list(summary.values()), ensure_ascii=False, separators=(",", ":")) if summary else ""


class ShareFiles(msgspec.Struct, frozen=True, tag=True):
    """Files whose keys name another conversation are now also referenced by a message of
    ``conv`` (a forward): its readers may download them (``Store.file_convs``)."""

    conv: ConvId
    keys: tuple[str, ...]


class HideMessages(msgspec.Struct, frozen=True, tag=True):
    """The user deletes messages ``seqs`` of ``conv`` for themselves: they are hidden from
    that user's reads from now on, and, if any was not hidden yet, the user's
    ``UserConv.view_ver`` grows by one. Resolves to (the seqs newly hidden, ascending; the
    view_ver after the change), or None when the user has no state in ``conv`` (removed
    meanwhile: nothing is written)."""

    user: UserId
    conv: ConvId
    seqs: tuple[int, ...]
    at: int  # unix ms


#: ``PinMessage``'s result when the conversation holds ``limit`` pins already
PINS_FULL = "full"


class PinMessage(msgspec.Struct, frozen=True, tag=True):
    """Pin message ``seq`` of ``conv``. Resolves to the ``Pin`` (the one stored already if
    it was pinned), None when there is no such message or it was recalled, or
    ``PINS_FULL`` when ``conv`` has ``limit`` pins: counted in the same transaction, so
    racing pins on several nodes never pass the limit."""

    conv: ConvId
    seq: int
    by: UserId
    at: int  # unix ms
    limit: int


class UnpinMessage(msgspec.Struct, frozen=True, tag=True):
    """Resolves to True if message ``seq`` of ``conv`` was pinned (and is no more)."""

    conv: ConvId
    seq: int


class SetPasswordHash(msgspec.Struct, frozen=True, tag=True):
    user: UserId
    password_hash: str


class RevokeToken(msgspec.Struct, frozen=True, tag=True):
    """``token_revoked(token_id)`` is True from now on; the store may forget it after
    ``expires_at`` (unix seconds), when the token is refused anyway."""

    token_id: str
    expires_at: int


class SetSettings(msgspec.Struct, frozen=True, tag=True):
    """Replace the user's own settings (invisible, group_add: "" is "never chosen")."""

    user: UserId
    invisible: bool
    group_add: str = ""


class SetDisabled(msgspec.Struct, frozen=True, tag=True):
    """Disable the account (its logins are refused with ACCOUNT_DISABLED), or enable it again."""

    user: UserId
    disabled: bool


class SetProfile(msgspec.Struct, frozen=True, tag=True):
    """Replace the user's nickname, avatar and bio."""

    user: UserId
    nickname: str
    avatar: str
    bio: str


class SetCredentials(msgspec.Struct, frozen=True, tag=True):
    """A new password: the hash is replaced and the credential epoch moves on by one, so
    every token issued before is refused. Resolves to the new epoch."""

    user: UserId
    password_hash: str


class DeleteAccount(msgspec.Struct, frozen=True, tag=True):
    """The account is deleted for good: its row stays (the id and username are never
    reused), with ``deleted_at`` set, the password hash, nickname, avatar and bio cleared
    and the epoch moved on; its friendships, friend requests (both ways), blocks (both
    ways), settings, join requests, memberships and its own conversation states go. Groups
    are the caller's to hand over first (a membership left here is simply dropped). With
    ``erase``, every message it sent becomes a tombstone (as a recall by the user, at
    ``ts``). Resolves to the number of messages erased."""

    user: UserId
    ts: int  # unix ms
    erase: bool = False


Change = (
    PutFriendRequest | DropFriendRequest | PutFriendship | DropFriendship | SetRemark | SetBlock
    | CreateGroup | PutGroup | PutMember | DropMember | DissolveGroup | PutJoinRequest
    | DropJoinRequest | SetUserConv | SetPasswordHash | RevokeToken | RecallMessage
    | SetSettings | SetDisabled | PutInvitations | DropInvitation | EditMessage | SetProfile | SetCredentials
    | DeleteAccount | SetReaction | ShareFiles | HideMessages | PinMessage | UnpinMessage
)


class Store(Protocol):
    """Durable state: users, messages, the social graph and per-user conversation state.

    Guarantees:
    - ``submit`` and ``apply`` resolve only after their write is durable (committed; for
      SQLite, WAL fsync'd per the configured sync mode; for MySQL, per the server's own
      durability settings) and never block the event loop: writes are batched into one
      transaction per batch (group commit) off the loop.
    - Writes are applied in the order ``submit`` and ``apply`` are called, messages and
      changes alike: a caller that writes in order sees its writes in that order. With
      several store instances on shared storage (a cluster's nodes), each instance keeps
      its own call order; writes of different instances interleave.
    - Within a conversation, seqs are assigned 1, 2, 3, ... strictly increasing with no gap
      among committed messages, also when several instances write the conversation at
      once. A message is stored once per conversation, never per member.
    - ``submit`` is idempotent on (sender, cmid): a second message with the same pair
      stores nothing and resolves to the first row with ``duplicate=True``; safe to retry.
    - A private message makes the conversation part of both users' ``UserRecords.convs``
      (created once, at its first message) and moves the sender's read cursor to it.
    """

    async def open(self) -> None:
        """Check the stored data, create or migrate the schema, start the writer. Raises
        StoreDamaged or StoreUnavailable instead of starting on data it cannot trust."""

    @property
    def healthy(self) -> bool:
        """False while writes fail for reasons other than the write itself (I/O, a full
        disk, damage); True again after the next successful commit."""

    async def close(self) -> None:
        """Commit every write already accepted, then release resources."""

    async def create_user(self, username: str, password_hash: str, nickname: str) -> User:
        """Raises ``UsernameTaken``."""

    async def get_user(self, user_id: UserId) -> User | None: ...

    async def get_user_by_name(self, username: str) -> User | None: ...

    def submit(self, message: NewMessage) -> asyncio.Future[StoredMessage]:
        """Accept one message for the next batch, now, without yielding; the future
        resolves once it is durable (see the class guarantees). Raises StoreClosed."""

    async def append(self, message: NewMessage) -> StoredMessage:
        """``await submit(message)``."""

    def apply(self, change: Change) -> asyncio.Future[Any]:
        """Accept one change for the next batch, now; the future resolves once it is
        durable, to the change's result (see each change; most have None). Raises
        StoreClosed; a change that breaks a constraint fails alone, not its batch."""

    async def messages_after(self, conv: ConvId, after_seq: int, limit: int, max_bytes: int = 0) -> list[StoredMessage]:
        """Messages with seq > after_seq, ascending, at most ``limit``; with ``max_bytes``,
        none after the first whose content (UTF-8) takes the running total past it."""

    async def messages_before(self, conv: ConvId, before_seq: int, limit: int, max_bytes: int = 0) -> list[StoredMessage]:
        """Messages with seq < before_seq (0: no bound), the newest ``limit`` of them, ascending;
        ``max_bytes`` counts from the newest, as in ``messages_after``."""

    async def messages_changed(self, conv: ConvId, after_rev: int, up_to_seq: int,
                               limit: int) -> tuple[list[StoredMessage], int]:
        """Messages of ``conv`` with seq <= ``up_to_seq`` whose ``rev`` is above
        ``after_rev``, by rev ascending, at most ``limit``; and the conversation's revision
        (its highest ``rev``), read in the same snapshot."""

    async def file_convs(self, key: str) -> list[ConvId]:
        """The conversations a file was forwarded to (``ShareFiles``), besides the one its
        key names."""

    async def load_user(self, user_id: UserId) -> UserRecords:
        """The user's friends, requests, blocks and conversations with their newest messages."""

    async def load_group(self, group_id: GroupId) -> GroupRecords | None:
        """The group with every member and pending join request; None if there is none."""

    async def token_revoked(self, token_id: str) -> bool:
        """True if ``RevokeToken(token_id, ...)`` was applied (and has not expired)."""

    async def group_add_rules(self, user_ids: Sequence[UserId]) -> dict[UserId, str]:
        """The group_add setting of each of these users that exists ("" for one who never
        chose); users that do not exist, or whose accounts were deleted, are left out."""

    async def readers(self, conv: ConvId, seq: int, exclude: UserId, after: UserId, limit: int) -> tuple[int, list[UserId]]:
        """How many users but ``exclude`` have read ``conv`` up to ``seq`` or beyond, and
        the ids of up to ``limit`` of them above ``after``, ascending. A member who joined
        at or after ``seq`` (``joined_seq >= seq``) never saw it and is not counted."""

    async def search(self, convs: Sequence[tuple[ConvId, int]], text: str, before_id: int,
                     limit: int, gone: Callable[[], bool] | None = None) -> list[StoredMessage]:
        """Messages of ``convs`` (each with the seq at and below which the reader may not
        see it) whose searchable text (``content.searchable``) contains ``text``, case
        insensitive; recalled ones left out; newest first (by id), ids below ``before_id``
        (0: no bound), at most ``limit``. Bounded in time: past the store's search
        timeout, or once ``gone()`` is true (the caller left), it stops and raises
        ``SearchTimeout``."""

    async def messages_by_id(self, conv: ConvId, ids: Sequence[int]) -> list[StoredMessage]:
        """The messages of ``conv`` among ``ids`` (in no particular order); ids of other
        conversations or of no message are left out. What replies quote."""

    # -- per-user views and message pins -----------------------------------------------------

    async def hidden_seqs(self, user: UserId, conv: ConvId, after_seq: int, upto_seq: int) -> list[int]:
        """The seqs of ``conv`` in (after_seq, upto_seq] that ``user`` deleted for
        themselves (``HideMessages``), ascending."""

    async def last_visible(self, user: UserId, conv: ConvId, floor: int) -> StoredMessage | None:
        """The newest message of ``conv`` above ``floor`` that ``user`` did not delete for
        themselves; None if there is none."""

    async def pins(self, conv: ConvId) -> list[Pin]:
        """The message pins of ``conv``, the newest pin first."""

    # -- operations (the admin API) ----------------------------------------------------------

    async def list_users(self, after: UserId, limit: int) -> list[User]:
        """Users with ids above ``after``, ascending, at most ``limit``."""

    async def list_groups(self, after: GroupId, limit: int) -> list[tuple[GroupRecord, int]]:
        """Groups with ids above ``after``, ascending, at most ``limit``, each with its
        number of members."""


class Route(msgspec.Struct, frozen=True):
    user_id: UserId
    terminal: str
    node: NodeId


class CallRecord(msgspec.Struct, frozen=True):
    """A 1:1 call's signaling state, shared by every node (``Routes`` keeps it)."""

    id: int
    caller: UserId
    caller_terminal: str  # the device that invited
    callee: UserId
    kind: str  # "audio" | "video"
    state: str  # "ringing" | "accepted"
    created_at: int  # unix ms
    callee_terminal: str = ""  # the device that accepted ("" while ringing)
    accepted_at: int = 0  # unix ms


class Routes(Protocol):
    """Where each (user, terminal) is connected: the presence map of the cluster.

    Guarantees: an entry lives ``ttl`` seconds unless ``renew`` is called (heartbeats
    renew it); ``bind`` replaces the entry for the same (user, terminal) atomically and
    returns the one it replaced; ``unbind`` removes the entry only if it still names the
    given node (a late unbind never removes a newer login's route). A shared
    implementation keeps these against every node at once (of concurrent binds, each
    replaces exactly one predecessor) and judges expiry by one clock for all nodes.
    """

    async def bind(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> Route | None: ...

    async def renew(self, user_id: UserId, terminal: str, node: NodeId, ttl: float) -> bool:
        """Extend the TTL; False if the entry is gone or names another node."""

    async def unbind(self, user_id: UserId, terminal: str, node: NodeId) -> bool: ...

    async def lookup(self, user_ids: Sequence[UserId]) -> list[Route]:
        """Live routes of these users (every terminal), in no particular order."""

    async def subscribe(self, node: NodeId, convs: Sequence[ConvId]) -> None:
        """``node`` has local members of these (group) conversations online: their messages
        go to it once, by conversation id, and it expands them locally."""

    async def unsubscribe(self, node: NodeId, convs: Sequence[ConvId]) -> None: ...

    async def nodes_of(self, conv: ConvId) -> list[NodeId]:
        """The nodes subscribed to ``conv``."""

    async def unsubscribe_node(self, node: NodeId) -> None:
        """Take ``node`` out of every conversation (a node starting again after a crash)."""

    async def lease_number(self, node: NodeId, ttl: float, numbers: int) -> int:
        """A number in 0..numbers-1 that no other live node holds, leased to ``node`` for
        ``ttl`` seconds (the one it holds already, if any): the node's part of message ids,
        which must never collide."""

    async def renew_number(self, number: int, node: NodeId, ttl: float) -> bool:
        """Extend the lease; False if it lapsed (the node must stop making ids). The lease,
        when renewed, lasts at least ``ttl`` seconds from when the call was made: the node
        fences its ids on that (services/ids.py)."""

    async def ping(self) -> None:
        """One round trip to the backend (the node's readiness probe); raises when it does
        not answer. Every call of a shared implementation fails within a bounded time when
        its server hangs, never waits for ever."""

    # -- presence and calls (rich messaging) --------------------------------------------------

    async def set_hidden(self, user_id: UserId, hidden: bool) -> None:
        """Mark ``user_id`` invisible, or visible again. A copy of the stored setting that
        nodes write at each login and change (not durable: a lost mark comes back at the
        user's next login)."""

    async def hidden(self, user_ids: Sequence[UserId]) -> set[UserId]:
        """Which of these users are marked invisible."""

    async def start_call(self, call: CallRecord, ttl: float) -> UserId | None:
        """Store ``call`` and mark its caller and callee as in it, atomically, unless either
        is in a call already: then nothing changes and that user is returned (the caller if
        both are). The call and both marks expire after ``ttl`` seconds unless updated."""

    async def get_call(self, call_id: int) -> CallRecord | None: ...

    async def update_call(self, call: CallRecord, expect: str, ttl: float) -> bool:
        """Compare and set: replace the call ``call.id`` by ``call`` (its expiry and both
        marks' moved to ``ttl`` from now) if its stored state is ``expect``. Of racing
        updates one wins; False if the call is gone or in another state."""

    async def end_call(self, call_id: int, expect: str) -> CallRecord | None:
        """Remove the call and both marks if its state is ``expect``; the record removed, or
        None (gone, or in another state): of racing ends exactly one gets the record."""

    # -- the node registry (operations: im cluster nodes, drain) ----------------------------------

    async def announce(self, info: NodeInfo, ttl: float) -> None:
        """Put ``info`` in the node registry, replacing the node's earlier record, for ``ttl``
        seconds: a node announces itself every few seconds, so one that dies drops out."""

    async def nodes(self) -> list[NodeInfo]:
        """The records announced and not expired, ordered by node id."""

    async def withdraw(self, node: NodeId) -> None:
        """Remove ``node``'s record (a node that stops)."""

    async def close(self) -> None: ...


class NodeInfo(msgspec.Struct, frozen=True):
    """A node as it announces itself in the registry (``Routes.announce``)."""

    id: NodeId
    address: str  # the WebSocket URL clients connect to (ws://host:port/ws)
    http_url: str  # its HTTP listener: health, /metrics, the admin API
    connections: int
    load: float  # SENDs acknowledged per second, lately
    version: str
    started_at: int  # unix ms
    heartbeat: int  # unix ms of this announcement, by the node's clock
    state: str = "ready"  # "ready", "draining", or "unready" (a backend is down)


class Refresh(msgspec.Struct, frozen=True, gc=False):
    """Users and groups whose state a node changed in the store: the nodes that hold them
    reload them."""

    users: tuple[UserId, ...] = ()
    groups: tuple[GroupId, ...] = ()
    #: users whose profile changed (or who were deleted): every node forgets its cached
    #: copy (sent to every node of the registry, not only those holding the users)
    profiles: tuple[UserId, ...] = ()
    #: with ``profiles``: those accounts were deleted with their messages erased: a
    #: conversation head they sent becomes a tombstone in memory too
    erased: bool = False


class Envelope(msgspec.Struct, frozen=True):
    """What one node hands another: an encoded frame and whom to give it to there.

    ``frame`` is sent as is to every local session of ``user_ids`` on the receiving node,
    or, when ``conv`` is set, of every local member of that conversation but ``user_ids``
    (the receiving node expands it: a group message crosses to each node once, never once
    per member; members who just came or went get such a frame by name instead), except
    the session (``skip_user``, ``skip_terminal``) that originated it. A KICK
    envelope (``kick_terminal`` set) closes that user's session on that terminal.
    """

    frame: bytes
    user_ids: tuple[UserId, ...] = ()
    conv: ConvId = ConvId("")
    skip_user: UserId = UserId(0)
    skip_terminal: str = ""
    kick_terminal: str = ""
    #: users and groups changed in the store by the sending node: the receiving node
    #: reloads those it holds (``frame`` is empty then)
    refresh: Refresh | None = None
    #: set: ``frame`` goes to the session of (``user_ids``, this terminal) only
    only_terminal: str = ""
    #: the stored message ``frame`` carries (a new one, or a recall's tombstone): the
    #: receiving node's heads and lists take it from here, never from the frame's bytes
    message: StoredMessage | None = None
    #: envelopes for the receiving node may have been lost before this one (a gap in a
    #: publisher's sequence, a publisher that could not route a batch): the node reads
    #: what it holds again from the store and re-pushes the heads that moved, so that its
    #: lists and its clients' syncs are true again (``frame`` is empty then)
    lost: bool = False


class Bus(Protocol):
    """Node-to-node delivery: one topic per node.

    Guarantees: ``publish`` to a node is called once per target node per fanout, never
    once per receiver; delivery is at-most-once and per-publisher FIFO (a lost push is
    recovered by the client's sync, which is why messages are durable before they fan out).
    At-most-once is what ``on_envelope`` sees: an envelope may be lost (the target is not
    consuming, a broker is down), never handed over twice; an implementation on an
    at-least-once broker deduplicates what the broker redelivers. ``publish`` never blocks
    the event loop and never raises because the target or a broker is unreachable (it
    drops and logs); it raises only when this bus is closed. A node that starts consuming
    receives what is published from then on, never what its earlier incarnations missed.
    """

    async def start(self, node: NodeId, on_envelope: Callable[[Envelope], Awaitable[None] | None]) -> None:
        """Begin consuming this node's topic; ``on_envelope`` runs on the event loop."""

    async def publish(self, node: NodeId, envelope: Envelope) -> None: ...

    async def ping(self) -> None:
        """Ask the broker(s) something, off the event loop (the node's readiness probe);
        raises when they do not answer within a few seconds, or when this bus is closed."""

    async def close(self) -> None: ...


# -- files ------------------------------------------------------------------------------------

class FilesUnavailable(StoreUnavailable):
    """The file backend cannot be reached or written (a full disk, an S3 server down or
    refusing our credentials); the message says which. At start it stops the node as a
    store that cannot be opened does; later a grant that needs it is 5001 UNAVAILABLE."""


class FileQuotaExceeded(Exception):
    """An upload would take its account past the bytes of files it may keep."""


class FileStat(msgspec.Struct, frozen=True):
    size: int  # bytes
    mime: str  # the Content-Type it was uploaded with


class SignedUrl(msgspec.Struct, frozen=True):
    """One HTTP request a client may make without the node: ``method`` on ``url`` with
    exactly ``headers`` (name, value), until ``expires_at`` (unix seconds)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    expires_at: int


class Files(Protocol):
    """The bytes of files, which clients move over HTTP with signed, expiring URLs: the node
    hands out the URLs (FILE_UPLOAD, FILE_DOWNLOAD) and never carries a file's bytes.

    Guarantees (tests/backends/test_files_contract.py):
    - ``presign_put`` and ``presign_get`` do no I/O and never block: a local computation.
    - A PUT to ``presign_put(key, size, mime, expires)``'s URL with its headers, before it
      expires, stores exactly that body under ``key`` with content type ``mime`` (replacing
      what ``key`` held). Any other request to it is refused with 403 and stores nothing:
      another key or method, a body of another length, another Content-Type, an altered
      query string, or after expiry.
    - All or nothing: a reader (``stat``, a GET) sees the old object or the whole new one,
      never a part; an upload cut short stores nothing.
    - A GET of ``presign_get(key, expires, filename)``'s URL before it expires answers 200
      with the bytes, the stored Content-Type and ``Content-Disposition: attachment;
      filename="<filename>"``; 404 if there is no object; 403 when expired or altered.
    - ``stat`` and ``delete`` see every upload answered 200 before they were called;
      ``delete`` of a missing key is not an error.
    - Keys are 1..512 characters of ``[A-Za-z0-9._/-]``, in segments that do not start with
      a dot (services/files.py makes them); a filename is such a segment.
    - ``open``, ``stat`` and ``delete`` raise FilesUnavailable when the backend fails.
    """

    async def open(self) -> None:
        """Make ready (a directory; a bucket, created if missing)."""

    def presign_put(self, key: str, size: int, mime: str, expires: int, owner: int = 0) -> SignedUrl:
        """``owner``: the account the upload is charged to (``room``)."""

    async def share(self, keys: Sequence[str]) -> None:
        """``keys`` are referenced by a message: never expired as unshared (``expire``)."""

    async def expire(self, older_than: float) -> int:
        """Delete the uploads never shared (``share``) that were stored more than
        ``older_than`` seconds ago; returns how many. A backend that leaves this to the
        server (S3: lifecycle rules) deletes nothing."""

    async def room(self, owner: int, size: int) -> None:
        """Raise if ``size`` more bytes of ``owner`` may not be stored now: FilesUnavailable
        when the disk would keep less free space than its reserve (the store shares it),
        FileQuotaExceeded past the account's quota. A backend that keeps no such account
        (S3: the server's own limits) raises nothing."""

    def presign_get(self, key: str, expires: int, filename: str) -> SignedUrl: ...

    async def stat(self, key: str) -> FileStat | None:
        """Size and type of the object; None if there is none."""

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...
