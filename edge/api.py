"""The request handlers: one method ``on_<op>`` per request op of ``bodies.OPS``, each
turning a decoded request into service calls and a reply. Lists are answered from memory
inside the frame callback (no task); anything that waits on the store returns a
coroutine, which the session runs as a task. Errors are raised, never answered here:
the session maps them to ERROR frames."""
from __future__ import annotations

import asyncio
import inspect
from typing import Any, Awaitable, Callable, Coroutine

import msgspec

from ..backends.protocols import StoredMessage, UserId
from ..core_ext import bodies, content
from ..core_ext.errors import Unavailable
from ..core_ext.protocol import MAX_BODY_SIZE, CloseCode, Flag, Op
from ..ops.metrics import EDGE
from ..services.accounts import Accounts
from ..services.auth import AuthService, Identity
from ..services.calls import Calls
from ..services.indicators import Typing
from ..services.presence import PresenceWatch
from ..services.conversations import Conversations, is_group, parse_conv
from ..services.delivery import Delivery
from ..services.files import FileGrants
from ..services.groups import Groups
from ..services.messages import Messages, message_body
from ..services.pipeline import Pipeline
from ..services.quota import SendQuota
from ..services.reactions import Reactions, page_reactions
from ..services.social import Social
from ..services.state import State, UserState
from ..services.users import Users
from ..services.views import Views, stub
from .presence import Presence
from .session import Handler, Session

__all__ = ["Api"]

#: room in a reply body for the page's own keys around its messages
_PAGE_BUDGET = MAX_BODY_SIZE - 256
#: Flag.GROUP as a plain int: ``int & IntFlag`` goes through the enum machinery (1.3 µs
#: against 0.05 here, on every SEND)
_GROUP = int(Flag.GROUP)


class Api:
    def __init__(self, node: str, state: State, auth: AuthService, presence: Presence, delivery: Delivery,
                 messages: Messages, pipeline: Pipeline, conversations: Conversations, social: Social,
                 groups: Groups, quota: SendQuota, files: FileGrants | None = None, watch: PresenceWatch | None = None,
                 typing: Typing | None = None, calls: Calls | None = None, users: Users | None = None,
                 accounts: Accounts | None = None, reactions: Reactions | None = None,
                 forward_max: int = 20, views: Views | None = None) -> None:
        self._node = node
        self._state = state
        self._auth = auth
        self._presence = presence
        self._delivery = delivery
        self._messages = messages
        self._pipeline = pipeline
        self._conversations = conversations
        self._social = social
        self._groups = groups
        self._quota = quota
        self._files = files
        # rich messaging (None only in a node built without them)
        self._watch = watch
        self._typing = typing
        self._calls = calls
        self._users = users
        self._accounts = accounts
        self._reactions = reactions
        self._forward_max = forward_max
        self._views = views
        #: op -> handler, for every request op
        self.handlers: dict[int, Handler] = {op: self._settling(getattr(self, f"on_{op.name.lower()}")) for op in bodies.OPS}

    def _settling(self, handler: Any) -> Handler:
        """A handler that waits on the store, made to wait first for the reloads under way
        of its user and group (another node changed them: the push announcing the change
        may have reached the client before this node read the change back). Handlers
        answered from memory run as they are."""
        if not inspect.iscoroutinefunction(handler):
            return handler
        state = self._state

        def run(s: Session, req_id: int, flags: int, target: int, req: Any) -> Awaitable[None]:
            if not state.reloading:
                return handler(s, req_id, flags, target, req)
            keys = [f"u:{s.user_id}"] + ([f"g:{req.group}"] if hasattr(req, "group") else [])
            return _after(state.settled(*keys), handler(s, req_id, flags, target, req))

        return run

    def _me(self, session: Session) -> UserState:
        user = self._state.users.get(session.user_id)  # loaded at login, kept while online
        if user is None:  # the session closed (the user's last here) while this request waited
            raise Unavailable("the session is closing")
        return user

    # -- accounts and sessions ------------------------------------------------------------------

    async def on_user_find(self, s: Session, req_id: int, flags: int, target: int, req: bodies.UserFind) -> None:
        s.reply(Op.USER_FIND_OK, req_id, await self._profiles().find(req.username))

    async def on_users(self, s: Session, req_id: int, flags: int, target: int, req: bodies.UserIds) -> None:
        found = await self._profiles().profiles([UserId(u) for u in req.users])
        s.reply(Op.USERS_OK, req_id, bodies.UserProfiles(users=found))

    def _profiles(self) -> Users:
        if self._users is None:
            raise Unavailable("this node serves no user profiles")
        return self._users

    def on_ping(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Empty) -> None:
        s.reply(Op.PONG, req_id, None)  # the session answers PING itself; kept for the table

    async def on_register(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Register) -> None:
        user = await self._auth.register(req.username, req.password, req.nickname, s.address, s.wanted)
        s.reply(Op.REGISTER_OK, req_id, bodies.RegisterOk(user_id=user.id))

    def on_login(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Login) -> Awaitable[None]:
        return self._login(s, req_id, Op.LOGIN_OK, req.terminal, lambda: self._auth.login(req.username, req.password, s.address, s.wanted))

    def on_token_login(self, s: Session, req_id: int, flags: int, target: int, req: bodies.TokenLogin) -> Awaitable[None]:
        return self._login(s, req_id, Op.TOKEN_LOGIN_OK, req.terminal, lambda: self._auth.token_login(req.token))

    async def _login(self, s: Session, req_id: int, ok: Op, terminal: str, check: Callable[[], Awaitable[Identity]]) -> None:
        s.begin_login()
        try:
            identity = await check()
            await self._presence.check_room(identity.user_id, terminal)
            # what the lists need, in memory before the first request: the user and their groups
            user = await self._state.user(identity.user_id)
            for conv in [c for c in user.convs if is_group(c)]:
                await self._state.group(parse_conv(conv)[1])
        except BaseException:
            s.end_login(None)
            EDGE.logins[1] += 1
            raise
        EDGE.logins[0] += 1
        if not s.end_login(identity.user_id, terminal):  # e.g. the auth timeout closed it meanwhile
            return
        s.identity = identity
        try:
            await self._presence.bind(s)
        except BaseException:  # the routes did not answer: not logged in, the login may be retried
            self._presence.release(s)
            s.identity = None
            s.end_login(None)
            raise
        s.reply(ok, req_id, bodies.LoginOk(
            user_id=identity.user_id, token=identity.token, expires_at=identity.expires_at,
            terminal=terminal, node=self._node,
        ))

    async def on_logout(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Empty) -> None:
        """End the session and revoke its token: durable before LOGOUT_OK."""
        if s.identity is not None:
            await self._auth.revoke(s.identity)
        s.reply(Op.LOGOUT_OK, req_id, None)
        s.close(CloseCode.LOGGED_OUT, "logged out")

    # -- accounts and profiles ------------------------------------------------------------------

    async def on_profile_set(self, s: Session, req_id: int, flags: int, target: int, req: bodies.ProfileSet) -> None:
        s.reply(Op.PROFILE_SET_OK, req_id, await self._account_service().set_profile(s.user_id, s.terminal, req))

    async def on_password_change(self, s: Session, req_id: int, flags: int, target: int,
                                 req: bodies.PasswordChange) -> None:
        """Durable (with every earlier token refused) before the reply; this session stays."""
        assert s.identity is not None
        identity, closed = await self._account_service().change_password(
            s.identity, s.terminal, req.old_password, req.new_password, s.address, s.wanted)
        s.identity = identity
        s.reply(Op.PASSWORD_CHANGE_OK, req_id, bodies.PasswordChanged(token=identity.token,
                                                                      expires_at=identity.expires_at, closed=closed))

    async def on_account_delete(self, s: Session, req_id: int, flags: int, target: int,
                                req: bodies.AccountDelete) -> None:
        """Durable before the reply; then this session closes (4009)."""
        await self._account_service().delete_own(s.user_id, req.password, s.terminal, s.address, s.wanted)
        s.reply(Op.ACCOUNT_DELETE_OK, req_id, None)
        s.close(CloseCode.LOGGED_OUT, "account deleted")

    def _account_service(self) -> Accounts:
        if self._accounts is None:
            raise Unavailable("this node serves no account changes")
        return self._accounts

    # -- messages -------------------------------------------------------------------------------

    def on_send(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Send) -> Awaitable[None] | None:
        """The common SEND is handed to the pipeline without a task: sender and receiver
        (or group) in memory, and no earlier send of this connection still being checked.
        Otherwise a task checks it, and a per-connection gate keeps later sends behind it,
        so sends reach the store in the order they were sent. The pipeline acks and
        pushes once the message is durable (services/pipeline.py)."""
        group = bool(flags & _GROUP)
        text = content.stored(req.type, req.content)
        self._quota.charge(s.user_id, len(text.encode()), self._audience(target) if group else 1)
        if self._state.reloading:  # another node changed the sender or the group: check fresh state
            keys = (f"u:{s.user_id}", f"g:{target}" if group else "")
            if any(key in self._state.reloading for key in keys):
                previous, s.send_gate = s.send_gate, asyncio.get_running_loop().create_future()
                return _after(self._state.settled(*keys), self._send_later(s, req_id, target, group, req, text,
                                                                          previous, s.send_gate))
        if (s.send_gate is None or s.send_gate.done()) and not req.reply_to:  # a reply reads what it quotes
            new = self._messages.prepare_now(self._me(s), target, group, req.cmid, req.type, text, req.mentions,
                                             req.mention_all)
            if new is not None:
                self._pipeline.send(s, req_id, new)
                return None
        # the gate is set now, not when the task starts, so that a SEND read right after
        # this one cannot take the fast path ahead of it
        previous, s.send_gate = s.send_gate, asyncio.get_running_loop().create_future()
        return self._send_later(s, req_id, target, group, req, text, previous, s.send_gate)

    def _audience(self, group_id: int) -> int:
        """How many a group message fans out to: the group's members (its sender's groups
        are loaded at login; one not loaded is not the sender's, and is refused)."""
        group = self._state.groups.get(group_id)
        return 1 if group is None else len(group.members)

    async def _send_later(self, s: Session, req_id: int, target: int, group: bool, req: bodies.Send, text: str,
                          previous: asyncio.Future[None] | None, mine: asyncio.Future[None]) -> None:
        try:
            new = await self._messages.prepare(self._me(s), target, group, req.cmid, req.type, text, req.mentions,
                                               req.mention_all, req.reply_to)
            if previous is not None and not previous.done():
                await previous
            self._pipeline.send(s, req_id, new)
        finally:
            # the next send may go once this one is in the store's queue, or, if this one
            # failed, once the one before it is: the chain of gates is never broken
            if previous is None or previous.done():
                mine.set_result(None)
            else:
                previous.add_done_callback(lambda _: mine.set_result(None))

    async def on_forward(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Forward) -> None:
        """FORWARD: copies checked as SENDs (services/messages.py) and charged to the send
        budget (all or none), their files shared with the target, then appended and pushed
        by the pipeline; the reply once all are durable."""
        group = bool(flags & _GROUP)
        copies, files = await self._messages.forward(self._me(s), target, group, req, self._forward_max)
        audience = self._audience(target) if group else 1
        self._quota.charge_all(s.user_id, [len(copy.content.encode()) for copy in copies], audience)
        await self._messages.share_files(copies[0].conv, files)  # only once nothing can refuse it
        acks = await self._pipeline.forward(s, copies)
        s.reply(Op.FORWARD_OK, req_id, bodies.ForwardOk(acks=acks))

    async def on_react(self, s: Session, req_id: int, flags: int, target: int, req: bodies.React) -> None:
        if self._reactions is None:
            raise Unavailable("this node serves no reactions")
        s.reply(Op.REACT_OK, req_id, await self._reactions.react(self._me(s), s.terminal, req))

    async def on_recall(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Recall) -> None:
        # a recall drops the message's pin: asked first (of a member only), so the members hear of it
        pinned = self._views is not None and await self._conversations.floor(s.user_id, req.conv) >= 0 \
            and await self._views.pinned(req.conv, req.seq)
        tombstone = await self._messages.recall(s.user_id, req.conv, req.seq)
        self._pipeline.recalled(tombstone, s)
        if pinned and self._views is not None:  # its pin went with it
            self._views.recalled(req.conv, req.seq, s.user_id, s.terminal)
        s.reply(Op.RECALL_OK, req_id, message_body(tombstone))

    async def on_edit(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Edit) -> None:
        """An edit is budgeted as a send of its text to the conversation's members."""
        group = parse_conv(req.conv)[1] if is_group(req.conv) else 0
        self._quota.charge(s.user_id, len(req.content.encode()), self._audience(group) if group else 1)
        edited = await self._messages.edit(self._me(s), req.conv, req.seq, req.content)
        self._pipeline.edited(edited, s)
        s.reply(Op.EDIT_OK, req_id, message_body(edited))

    async def on_search(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Search) -> None:
        rows, more = await self._messages.search(self._me(s), req, lambda: s.closed)
        if self._views is not None:  # what the user deleted for themselves is not found
            rows = await self._views.visible(s.user_id, rows)
        page = _page(req.conv, rows, more, keep_newest=False)
        s.reply(Op.SEARCH_OK, req_id, bodies.SearchPage(msgs=page.msgs, has_more=page.has_more))

    async def on_sync(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Sync) -> None:
        if req.changes_after is not None:  # and what changed up to after_seq since that revision
            changed, rev, changes_more = await self._messages.changed(s.user_id, req.conv, req.after_seq,
                                                                      req.changes_after, req.limit)
        rows, more = await self._messages.sync(s.user_id, req.conv, req.after_seq, req.limit)
        rows = await self._messages.with_quotes(s.user_id, req.conv, rows)
        hidden = await self._views.hidden_in(s.user_id, req.conv, rows) if self._views is not None else None
        page = _page(req.conv, rows, more, keep_newest=False, hidden=hidden)
        if req.changes_after is not None:
            # a message the reader deleted for themselves comes as its stub, as in pages
            gone = (await self._views.hidden_in(s.user_id, req.conv, sorted(changed, key=lambda m: m.seq))
                    if self._views is not None and changed else None)
            _add_changes(page, changed, rev, changes_more, gone)
        s.reply(Op.SYNC_OK, req_id, page)

    async def on_history(self, s: Session, req_id: int, flags: int, target: int, req: bodies.History) -> None:
        rows, more = await self._messages.history(s.user_id, req.conv, req.before_seq, req.limit)
        rows = await self._messages.with_quotes(s.user_id, req.conv, rows)
        hidden = await self._views.hidden_in(s.user_id, req.conv, rows) if self._views is not None else None
        s.reply(Op.HISTORY_OK, req_id, _page(req.conv, rows, more, keep_newest=True, hidden=hidden))

    # -- per-user views and message pins (services/views.py) -------------------------------------

    async def on_delete_for_me(self, s: Session, req_id: int, flags: int, target: int, req: bodies.DeleteForMe) -> None:
        event = await self._own_views().delete_for_me(self._me(s), req.conv, req.seqs, s.terminal)
        s.reply(Op.DELETE_FOR_ME_OK, req_id, event)

    async def on_clear_history(self, s: Session, req_id: int, flags: int, target: int,
                               req: bodies.ClearHistory) -> None:
        event = await self._own_views().clear_history(self._me(s), req.conv, req.seq, s.terminal)
        s.reply(Op.CLEAR_HISTORY_OK, req_id, event)

    async def on_pin_message(self, s: Session, req_id: int, flags: int, target: int, req: bodies.MessageRef) -> None:
        s.reply(Op.PIN_MESSAGE_OK, req_id, await self._own_views().pin(s.user_id, req.conv, req.seq, s.terminal))

    async def on_unpin_message(self, s: Session, req_id: int, flags: int, target: int, req: bodies.MessageRef) -> None:
        await self._own_views().unpin(s.user_id, req.conv, req.seq, s.terminal)
        s.reply(Op.UNPIN_MESSAGE_OK, req_id, None)

    async def on_pins(self, s: Session, req_id: int, flags: int, target: int, req: bodies.ConvRef) -> None:
        s.reply(Op.PINS_OK, req_id, await self._own_views().pins(s.user_id, req.conv))

    def _own_views(self) -> Views:
        if self._views is None:
            raise Unavailable("this node serves no per-user views or message pins")
        return self._views

    # -- conversations --------------------------------------------------------------------------

    def on_conversations(self, s: Session, req_id: int, flags: int, target: int,
                         req: bodies.Conversations) -> Awaitable[None] | None:
        """From memory; while another node's change of the user is read back (a group
        joined there, whose GROUP_PUSH the client may have just had), after it."""
        if self._state.reloading and f"u:{s.user_id}" in self._state.reloading:
            return self._conversations_later(s, req_id, req)
        s.reply_body(Op.CONVERSATIONS_OK, req_id, self._conversations.page(self._me(s), req.cursor, req.limit))
        return None

    async def _conversations_later(self, s: Session, req_id: int, req: bodies.Conversations) -> None:
        await self._state.settled(f"u:{s.user_id}")
        s.reply_body(Op.CONVERSATIONS_OK, req_id, self._conversations.page(self._me(s), req.cursor, req.limit))

    async def on_conv_set(self, s: Session, req_id: int, flags: int, target: int, req: bodies.ConvSet) -> None:
        s.reply(Op.CONV_SET_OK, req_id, await self._conversations.set_flags(self._me(s), req, s.terminal))

    async def on_read(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Read) -> None:
        s.reply(Op.READ_OK, req_id, await self._conversations.read(self._me(s), req.conv, req.seq, s.terminal))

    async def on_readers(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Readers) -> None:
        s.reply(Op.READERS_OK, req_id, await self._conversations.readers(s.user_id, req))

    # -- friends --------------------------------------------------------------------------------

    async def on_friend_request(self, s: Session, req_id: int, flags: int, target: int, req: bodies.FriendRequest) -> None:
        await self._social.request(self._me(s), UserId(req.user), req.message)
        s.reply(Op.FRIEND_REQUEST_OK, req_id, None)

    async def on_friend_accept(self, s: Session, req_id: int, flags: int, target: int, req: bodies.UserRef) -> None:
        await self._social.accept(self._me(s), UserId(req.user))
        s.reply(Op.FRIEND_ACCEPT_OK, req_id, None)

    async def on_friend_reject(self, s: Session, req_id: int, flags: int, target: int, req: bodies.UserRef) -> None:
        await self._social.reject(self._me(s), UserId(req.user))
        s.reply(Op.FRIEND_REJECT_OK, req_id, None)

    async def on_friend_delete(self, s: Session, req_id: int, flags: int, target: int, req: bodies.UserRef) -> None:
        await self._social.delete(self._me(s), UserId(req.user))
        s.reply(Op.FRIEND_DELETE_OK, req_id, None)

    def on_friends(self, s: Session, req_id: int, flags: int, target: int, req: bodies.ListPage) -> None:
        s.reply_body(Op.FRIENDS_OK, req_id, self._social.friends_page(self._me(s), req.after, req.limit))

    def on_friend_requests(self, s: Session, req_id: int, flags: int, target: int, req: bodies.ListPage) -> None:
        s.reply_body(Op.FRIEND_REQUESTS_OK, req_id, self._social.requests_page(self._me(s), req.after, req.limit))

    async def on_friend_remark(self, s: Session, req_id: int, flags: int, target: int, req: bodies.FriendRemark) -> None:
        await self._social.remark(self._me(s), UserId(req.user), req.remark)
        s.reply(Op.FRIEND_REMARK_OK, req_id, None)

    def on_blocks(self, s: Session, req_id: int, flags: int, target: int, req: bodies.ListPage) -> None:
        s.reply_body(Op.BLOCKS_OK, req_id, self._social.blocks_page(self._me(s), req.after, req.limit))

    async def on_block(self, s: Session, req_id: int, flags: int, target: int, req: bodies.UserRef) -> None:
        await self._social.block(self._me(s), UserId(req.user), True)
        s.reply(Op.BLOCK_OK, req_id, None)

    async def on_unblock(self, s: Session, req_id: int, flags: int, target: int, req: bodies.UserRef) -> None:
        await self._social.block(self._me(s), UserId(req.user), False)
        s.reply(Op.UNBLOCK_OK, req_id, None)

    # -- groups ---------------------------------------------------------------------------------

    async def on_group_create(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupCreate) -> None:
        group, added, invited = await self._groups.create(self._me(s), req)
        info = self._groups.info(group, s.user_id)
        s.reply(Op.GROUP_CREATE_OK, req_id, bodies.GroupCreated(**msgspec.structs.asdict(info), added=added,
                                                                invited=invited))

    async def on_group_dissolve(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupRef) -> None:
        await self._groups.dissolve(await self._groups.get(req.group), s.user_id)
        s.reply(Op.GROUP_DISSOLVE_OK, req_id, None)

    async def on_group_update(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupUpdate) -> None:
        group = await self._groups.get(req.group)
        await self._groups.update(group, s.user_id, req)
        s.reply(Op.GROUP_UPDATE_OK, req_id, self._groups.info(group, s.user_id))

    def on_group_info(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupRef) -> Awaitable[None] | None:
        group = self._state.groups.get(req.group)
        if group is None:
            return self._group_info_later(s, req_id, req.group)
        s.reply(Op.GROUP_INFO_OK, req_id, self._groups.info(group, s.user_id))
        return None

    async def _group_info_later(self, s: Session, req_id: int, group_id: int) -> None:
        s.reply(Op.GROUP_INFO_OK, req_id, self._groups.info(await self._groups.get(group_id), s.user_id))

    def on_groups(self, s: Session, req_id: int, flags: int, target: int, req: bodies.ListPage) -> Awaitable[None] | None:
        body = self._groups.groups_page(self._me(s), req.after, req.limit)
        if body is None:
            return self._groups_later(s, req_id, req)
        s.reply_body(Op.GROUPS_OK, req_id, body)
        return None

    async def _groups_later(self, s: Session, req_id: int, req: bodies.ListPage) -> None:
        for conv in [c for c in self._me(s).convs if is_group(c)]:
            await self._state.group(parse_conv(conv)[1])
        body = self._groups.groups_page(self._me(s), req.after, req.limit)
        if body is None:
            raise Unavailable("the groups changed while loading; retry")
        s.reply_body(Op.GROUPS_OK, req_id, body)

    def on_group_members(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupMembers) -> Awaitable[None] | None:
        group = self._state.groups.get(req.group)
        if group is None:
            return self._members_later(s, req_id, req)
        s.reply_body(Op.GROUP_MEMBERS_OK, req_id, self._groups.members_page(group, s.user_id, req.after, req.limit))
        return None

    async def _members_later(self, s: Session, req_id: int, req: bodies.GroupMembers) -> None:
        group = await self._groups.get(req.group)
        s.reply_body(Op.GROUP_MEMBERS_OK, req_id, self._groups.members_page(group, s.user_id, req.after, req.limit))

    async def on_group_invite(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupUsers) -> None:
        added, invited = await self._groups.invite(await self._groups.get(req.group), self._me(s), req.users)
        s.reply(Op.GROUP_INVITE_OK, req_id, bodies.GroupUsersDone(group=req.group, users=added, invited=invited))

    def on_group_invitations(self, s: Session, req_id: int, flags: int, target: int,
                             req: bodies.ListPage) -> Awaitable[None] | None:
        """From memory, once a reload of the user under way has ended: an invitation made
        on another node is announced by a push that may come before this node has read it
        back, and a client that lists on that push must find it."""
        key = f"u:{s.user_id}"
        if key in self._state.reloading:
            return _after(self._state.settled(key), self._invitations(s, req_id, req))
        s.reply_body(Op.GROUP_INVITATIONS_OK, req_id, self._groups.invitations_page(self._me(s), req.after, req.limit))
        return None

    async def _invitations(self, s: Session, req_id: int, req: bodies.ListPage) -> None:
        s.reply_body(Op.GROUP_INVITATIONS_OK, req_id, self._groups.invitations_page(self._me(s), req.after, req.limit))

    async def on_group_invitation_accept(self, s: Session, req_id: int, flags: int, target: int,
                                         req: bodies.GroupRef) -> None:
        me = self._me(s)
        group = await self._groups.invited_group(me, req.group)
        await self._groups.accept(group, me)
        s.reply(Op.GROUP_INVITATION_ACCEPT_OK, req_id, self._groups.info(group, s.user_id))

    async def on_group_invitation_decline(self, s: Session, req_id: int, flags: int, target: int,
                                          req: bodies.GroupRef) -> None:
        me = self._me(s)
        await self._groups.decline(await self._groups.invited_group(me, req.group), me)
        s.reply(Op.GROUP_INVITATION_DECLINE_OK, req_id, None)

    async def on_group_join(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupJoin) -> None:
        status = await self._groups.join(await self._groups.get(req.group), self._me(s), req.message)
        s.reply(Op.GROUP_JOIN_OK, req_id, bodies.JoinResult(group=req.group, status=status))

    async def on_group_join_requests(self, s: Session, req_id: int, flags: int, target: int,
                                     req: bodies.GroupJoinRequests) -> None:
        group = await self._groups.get(req.group)
        s.reply_body(Op.GROUP_JOIN_REQUESTS_OK, req_id, self._groups.join_requests(group, s.user_id, req.after, req.limit))

    async def on_group_approve(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupApprove) -> None:
        await self._groups.approve(await self._groups.get(req.group), s.user_id, UserId(req.user), req.accept)
        s.reply(Op.GROUP_APPROVE_OK, req_id, None)

    async def on_group_quit(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupRef) -> None:
        await self._groups.quit(await self._groups.get(req.group), s.user_id)
        s.reply(Op.GROUP_QUIT_OK, req_id, None)

    async def on_group_kick(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupUser) -> None:
        await self._groups.kick(await self._groups.get(req.group), s.user_id, UserId(req.user))
        s.reply(Op.GROUP_KICK_OK, req_id, None)

    async def on_group_set_role(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupSetRole) -> None:
        await self._groups.set_role(await self._groups.get(req.group), s.user_id, UserId(req.user), req.role)
        s.reply(Op.GROUP_SET_ROLE_OK, req_id, None)

    async def on_group_transfer(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupUser) -> None:
        await self._groups.transfer(await self._groups.get(req.group), s.user_id, UserId(req.user))
        s.reply(Op.GROUP_TRANSFER_OK, req_id, None)

    async def on_group_mute(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupMute) -> None:
        await self._groups.mute(await self._groups.get(req.group), s.user_id, UserId(req.user), req.until)
        s.reply(Op.GROUP_MUTE_OK, req_id, None)

    async def on_group_mute_all(self, s: Session, req_id: int, flags: int, target: int, req: bodies.GroupMuteAll) -> None:
        await self._groups.mute_all(await self._groups.get(req.group), s.user_id, req.muted)
        s.reply(Op.GROUP_MUTE_ALL_OK, req_id, None)

    # -- files ----------------------------------------------------------------------------------

    async def on_file_upload(self, s: Session, req_id: int, flags: int, target: int, req: bodies.FileUpload) -> None:
        """A signed URL to PUT the file at: the caller must be able to read ``conv``."""
        s.reply(Op.FILE_UPLOAD_OK, req_id, await self._file_grants().upload(s.user_id, req))

    async def on_file_download(self, s: Session, req_id: int, flags: int, target: int, req: bodies.FileDownload) -> None:
        """A signed URL to GET the file at: the caller must be able to read the key's conversation."""
        s.reply(Op.FILE_DOWNLOAD_OK, req_id, await self._file_grants().download(s.user_id, req))

    # -- rich messaging: calls, typing, presence, settings -------------------------------------

    async def on_call_invite(self, s: Session, req_id: int, flags: int, target: int, req: bodies.CallInvite) -> None:
        started = await self._rich(self._calls).invite(self._me(s), s.terminal, UserId(req.to), req.kind, req.sdp)
        s.reply(Op.CALL_INVITE_OK, req_id, started)

    async def on_call_accept(self, s: Session, req_id: int, flags: int, target: int, req: bodies.CallAnswer) -> None:
        await self._rich(self._calls).accept(self._me(s), s.terminal, req.call, req.sdp)
        s.reply(Op.CALL_ACCEPT_OK, req_id, None)

    async def on_call_reject(self, s: Session, req_id: int, flags: int, target: int, req: bodies.CallRef) -> None:
        await self._rich(self._calls).reject(self._me(s), s.terminal, req.call)
        s.reply(Op.CALL_REJECT_OK, req_id, None)

    async def on_call_cancel(self, s: Session, req_id: int, flags: int, target: int, req: bodies.CallRef) -> None:
        await self._rich(self._calls).cancel(self._me(s), s.terminal, req.call)
        s.reply(Op.CALL_CANCEL_OK, req_id, None)

    async def on_call_hangup(self, s: Session, req_id: int, flags: int, target: int, req: bodies.CallRef) -> None:
        await self._rich(self._calls).hangup(self._me(s), s.terminal, req.call)
        s.reply(Op.CALL_HANGUP_OK, req_id, None)

    async def on_call_ice(self, s: Session, req_id: int, flags: int, target: int, req: bodies.CallIce) -> None:
        await self._rich(self._calls).ice(self._me(s), s.terminal, req.call, req.candidate)
        s.reply(Op.CALL_ICE_OK, req_id, None)

    def on_typing(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Typing) -> Awaitable[None] | None:
        """Answered without a task unless the group must be loaded first."""
        later = self._rich(self._typing).signal_now(self._me(s), req.conv, req.typing)
        if later is not None:
            return _after(later, _reply(s, Op.TYPING_OK, req_id))
        s.reply(Op.TYPING_OK, req_id, None)
        return None

    async def on_presence(self, s: Session, req_id: int, flags: int, target: int, req: bodies.PresenceUsers) -> None:
        s.reply(Op.PRESENCE_OK, req_id, await self._rich(self._watch).query(self._me(s), req.users))

    async def on_presence_subscribe(self, s: Session, req_id: int, flags: int, target: int,
                                    req: bodies.PresenceUsers) -> None:
        now = await self._rich(self._watch).watch(self._me(s), s, s.send_frame, req.users)
        s.reply(Op.PRESENCE_SUBSCRIBE_OK, req_id, now)

    async def on_presence_unsubscribe(self, s: Session, req_id: int, flags: int, target: int,
                                      req: bodies.PresenceUsers) -> None:
        await self._rich(self._watch).unwatch(s, req.users)
        s.reply(Op.PRESENCE_UNSUBSCRIBE_OK, req_id, None)

    async def on_settings(self, s: Session, req_id: int, flags: int, target: int, req: bodies.Settings) -> None:
        me = self._me(s)
        await self._rich(self._watch).settings(me, req.invisible, req.group_add)
        s.reply(Op.SETTINGS_OK, req_id, bodies.UserSettings(invisible=me.invisible, group_add=self._groups.add_rule(me)))

    @staticmethod
    def _rich(service: Any) -> Any:
        if service is None:
            raise Unavailable("this node serves no calls, typing or presence")
        return service

    def _file_grants(self) -> FileGrants:
        if self._files is None:
            raise Unavailable("this node serves no files")
        return self._files


async def _reply(s: Session, op: Op, req_id: int) -> None:
    s.reply(op, req_id, None)


async def _after(first: Awaitable[Any], then: Coroutine[Any, Any, None]) -> None:
    try:
        await first
    except BaseException:
        then.close()
        raise
    await then


def _page(conv: str, rows: list[StoredMessage], more: bool, keep_newest: bool,
          hidden: set[int] | None = None) -> bodies.Page:
    """A page that fits in one frame: as many of ``rows`` as the byte budget holds, from the
    oldest (SYNC pages forwards) or the newest (HISTORY pages backwards); ``has_more`` is
    set when some had to stay out. The first message is always in, so paging always moves
    on: one that cannot fit a frame by itself (stored before contents were bounded by their
    MessagePack size) comes without its content, marked ``too_large``. Each message is
    encoded once, and the page carries those bytes. The seqs in ``hidden`` (the reader
    deleted them for themselves) come as stubs."""
    msgs: list[Any] = []
    total = 0
    for m in reversed(rows) if keep_newest else rows:
        body = stub(m) if hidden and m.seq in hidden else message_body(m)
        encoded = bodies.encode(body)
        if len(encoded) > _PAGE_BUDGET:
            encoded = bodies.encode(msgspec.structs.replace(body, content="", too_large=True))
        total += len(encoded)
        if total > _PAGE_BUDGET and msgs:
            more = True
            break
        msgs.append(msgspec.Raw(encoded))
    if keep_newest:
        msgs.reverse()
        kept = rows[len(rows) - len(msgs):]
    else:
        kept = rows[:len(msgs)]
    return bodies.Page(conv=conv, msgs=msgs, has_more=more, reactions=page_reactions(kept))


def _add_changes(page: bodies.Page, changed: list[StoredMessage], rev: int, more: bool,
                 hidden: set[int] | None = None) -> None:
    """SYNC ``changes_after``: the messages changed since, by revision, as many as fit the
    frame beside the page's own (at least one, so that asking again moves on); ``rev`` is
    where the listed ones end (the conversation's revision when all fit). The seqs in
    ``hidden`` (the reader deleted them for themselves) come as stubs."""
    room = _PAGE_BUDGET - sum(len(m) for m in page.msgs) - len(bodies.encode(bodies.Page(
        conv=page.conv, msgs=[], has_more=False, reactions=page.reactions)))
    for i, m in enumerate(changed):
        encoded = bodies.encode(stub(m) if hidden and m.seq in hidden else message_body(m))
        reactions = page_reactions([m], changed=True)
        room -= len(encoded) + len(bodies.encode(reactions[0])) if reactions else len(encoded)
        if room < 0 and page.changed:
            more, rev = True, changed[i - 1].rev
            break
        page.changed.append(msgspec.Raw(encoded))
        page.reactions.extend(reactions)
    page.rev, page.changes_more = rev, more
