"""Groups: create, dissolve, update, invite, join (open or by approval), quit, kick, roles,
ownership, mutes, and the member and group lists, answered from memory.

Roles rank owner > admin > member; an actor acts only on members ranked below itself.
Members get a GROUP_PUSH for every change of membership, roles, mutes or the group's
record; the users it concerns get it too when they are no longer members.
A member who joins late reads the group conversation from the seq after their join on
(``Member.joined_seq``): what was said before they came stays unreadable to them.

Consent: each user chooses who may add them to a group (SETTINGS ``group_add``: "anyone",
"friends", "nobody"; the node's ``group_add_default`` until they choose). An add that the
rule does not allow (GROUP_CREATE's members, GROUP_INVITE) becomes an invitation instead:
stored, pushed to the invitee (GROUP_PUSH "invited"), listed by GROUP_INVITATIONS, and
nothing else of the group changes until the invitee accepts (then they join as if added,
"joined" to every member) or declines (nobody is told). Invitations are bounded per
invitee and per inviter (the store counts them in the write: InvitationsFull), charged to
the inviter's budget, expire after ``Invitations.ttl`` and go with a dissolved group.
Someone who blocked the adder is never invited: the add is refused (BLOCKED), as before.
"""
from __future__ import annotations

import asyncio
import bisect
import functools
import itertools
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import msgspec

from ..backends.protocols import (
    ConvId, CreateGroup, DissolveGroup, DropInvitation, DropJoinRequest, DropMember, GroupId, Invitation,
    InvitationsFull, JoinRequest, Member, PutGroup, PutInvitations, PutJoinRequest, PutMember, Store, UserConv, UserId,
)
from ..core_ext import bodies
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RateLimited, RequestError
from ..core_ext.protocol import ErrorCode, Op
from .conversations import group_conv, is_group, parse_conv
from .pages import fit
from .quota import SharedBuckets, UserBuckets
from .state import ROLE_RANK, GroupState, State, UserState

__all__ = ["Groups", "Membership", "Invitations"]

M = TypeVar("M", bound=Callable[..., Awaitable[Any]])


def _one_at_a_time(method: M) -> M:
    """A change of a group runs alone among the changes of that group on this node: it
    checks, writes and updates memory against the state the previous change left, so
    two changes at once (two joins for the last place, a kick and a mute of the same
    member, a rename and a mute-all) act as if one came after the other. Sends are not
    changes: they read the group without waiting."""

    @functools.wraps(method)
    async def run(self: Groups, group: GroupState, *args: Any, **kwargs: Any) -> Any:
        async with self._state.lock(("group", group.id)):
            if group.dissolved:
                raise RequestError(f"no group {group.id}", ErrorCode.NOT_FOUND)
            before = set(group.members)
            try:
                return await method(self, group, *args, **kwargs)
            finally:
                # other nodes reload the group, and the users who came or went (their lists)
                self._edge.refresh(users=before ^ set(group.members), groups=(group.id,))

    return run  # type: ignore[return-value]


class Membership:
    """What the edge does when members come and go: route the group's frames to them."""

    def __init__(self, to_users: Callable[[bytes, Iterable[UserId]], None], to_conv: Callable[..., None],
                 joined: Callable[[ConvId, UserId], None], left: Callable[[ConvId, UserId], None],
                 refresh: Callable[..., None],
                 reach: Callable[[ConvId, Iterable[UserId]], Awaitable[None]] | None = None) -> None:
        self.to_users = to_users
        self.to_conv = to_conv
        self.joined = joined
        self.left = left
        #: reach(conv, users): the other nodes these new members are online on take the
        #: conversation's frames from now on, before the change is announced
        self.reach = reach
        #: refresh(users=..., groups=...): other nodes holding these reload them
        self.refresh = refresh


@dataclass(frozen=True, slots=True)
class Invitations:
    """The bounds of group invitations (ops/config.py documents each)."""

    #: who may add a user who never chose: "anyone" | "friends" | "nobody"
    add_default: str = "friends"
    #: seconds an invitation stays pending
    ttl: float = 7 * 24 * 3600.0
    #: pending invitations one user may hold
    per_invitee: int = 100
    #: pending invitations one user may have sent
    per_inviter: int = 1000
    #: invitations one account may send an hour on a node (a bucket of that many)
    per_hour: int = 500


class Groups:
    def __init__(self, store: Store, state: State, membership: Membership, max_members: int,
                 creates_per_hour: int = 30, clock: Callable[[], float] = time.monotonic,
                 member_pushes: tuple[float, float] | None = None,
                 invitations: Invitations = Invitations()) -> None:
        self._store = store
        self._state = state
        self._edge = membership
        self.max_members = max_members
        # a new group stores a group and a row per member and pushes to each: budgeted
        self._creates = UserBuckets(creates_per_hour / 3600.0, float(creates_per_hour),
                                    f"{creates_per_hour} new groups an hour", clock)
        # a join or a leave pushes to every member: each group's are budgeted by that audience
        self._member_pushes = SharedBuckets(*member_pushes, clock) if member_pushes else None
        self.invitations = invitations
        # an invitation stores a row and pushes to its invitee: budgeted per inviter
        self._invites = UserBuckets(invitations.per_hour / 3600.0, float(invitations.per_hour),
                                    f"{invitations.per_hour} group invitations an hour", clock)

    def _charge_change(self, group: GroupState) -> None:
        """RATE_LIMITED if the group's joins and leaves are over their pushes a second."""
        if self._member_pushes is not None and not self._member_pushes.take(group.id, len(group.members)):
            raise RateLimited(f"group {group.id} is over {self._member_pushes.rate:g} pushes/s of joins and"
                              " leaves (each costs one per member); retry later")

    def forget(self, user: UserId) -> None:
        """The user has no session here any more (a spent budget is kept until refilled)."""
        self._creates.forget(user)
        self._invites.forget(user)

    def add_rule(self, user: UserState) -> str:
        """Who may add ``user`` to a group: their choice, or the node's default."""
        return user.group_add or self.invitations.add_default

    # -- reads (memory once the group is loaded) ------------------------------------------------

    async def get(self, group_id: int) -> GroupState:
        group = await self._state.group(GroupId(group_id))
        if group is None or group.dissolved:
            raise RequestError(f"no group {group_id}", ErrorCode.NOT_FOUND)
        return group

    def info(self, group: GroupState, user: UserId) -> bodies.GroupInfo:
        r = group.record
        member = group.members.get(user)
        return bodies.GroupInfo(
            group=r.id, name=r.name, avatar=r.avatar, notice=r.notice, owner=r.owner, join_mode=r.join_mode,
            mute_all=r.mute_all, members=len(group.members), max_members=r.max_members, created_at=r.created_at,
            role=member.role if member else "",
        )

    def groups_page(self, user: UserState, after: int, limit: int) -> bytes | None:
        """The user's groups by id, from memory, as many as fit a frame; None if one of
        those the page may show is not loaded yet."""
        key, versions = ("groups", after, limit), (user.version, self._state.groups_version)
        cached = user.cached(key, versions)
        if cached is not None:
            return cached
        ids = sorted(parse_conv(conv)[1] for conv in user.convs if is_group(conv))
        start = bisect.bisect_right(ids, after)
        loaded = self._state.groups
        if any(GroupId(g) not in loaded for g in ids[start:start + limit + 1]):
            return None
        shown, more = fit((bodies.encode(self.info(loaded[GroupId(g)], user.id)) for g in ids[start:start + limit + 1]),
                          limit)
        return user.keep(key, versions, bodies.encode(bodies.GroupList(groups=shown, has_more=more)))  # type: ignore[arg-type]

    def members_page(self, group: GroupState, user: UserId, after: int, limit: int) -> bytes:
        _member(group, user)
        key = (after, limit)
        cached = group.cache.get(key)
        if cached is not None:
            return cached
        ids = group.sorted_members()
        members = group.members
        shown, more = fit((bodies.encode(bodies.MemberInfo(user=u, role=members[u].role, muted_until=members[u].muted_until,
                                                           joined_at=members[u].joined_at))
                           for u in itertools.islice(ids, bisect.bisect_right(ids, after), None)), limit)
        if len(group.cache) >= 64:
            group.cache.clear()
        body = group.cache[key] = bodies.encode(bodies.MemberList(group=group.id, members=shown, has_more=more))  # type: ignore[arg-type]
        return body

    def join_requests(self, group: GroupState, user: UserId, after: int = 0, limit: int = bodies.MAX_LIST) -> bytes:
        """The pending requests to join, by user id above ``after``, as many as fit a frame."""
        _at_least(group, user, "admin")
        requests = group.requests
        ids = sorted(requests)
        shown, more = fit((bodies.encode(bodies.FriendRequestInfo(user=u, message=requests[u].message, ts=requests[u].ts))
                           for u in itertools.islice(ids, bisect.bisect_right(ids, after), None)), limit)
        return bodies.encode(bodies.JoinRequestList(group=group.id, requests=shown, has_more=more))  # type: ignore[arg-type]

    def check_send(self, group: GroupState, user: UserId, now_ms: int) -> None:
        """May ``user`` post in the group now? FORBIDDEN for a non-member, MUTED for a
        muted member or, unless admin or owner, while the whole group is muted; NOT_FOUND
        once it is dissolved."""
        if group.dissolved:
            raise RequestError(f"no group {group.id}", ErrorCode.NOT_FOUND)
        member = _member(group, user)
        if member.muted_until > now_ms:
            raise RequestError("you are muted in this group", ErrorCode.MUTED)
        if group.record.mute_all and member.role == "member":
            raise RequestError("the group is muted", ErrorCode.MUTED)

    # -- changes ----------------------------------------------------------------------------

    async def create(self, owner: UserState, req: bodies.GroupCreate) -> tuple[GroupState, list[UserId], list[UserId]]:
        """The new group, the users added and those invited instead (their group_add rule
        did not let the owner add them). Nothing is stored if any of it is refused."""
        self._creates.charge(owner.id)  # RATE_LIMITED past the account's budget
        asked = [UserId(u) for u in dict.fromkeys(req.members) if u != owner.id]
        members, invited = await self._consent(owner, asked)
        if 1 + len(members) > self.max_members:
            raise RequestError(f"a group holds at most {self.max_members} members", ErrorCode.GROUP_FULL)
        self._charge_invitations(owner.id, len(invited))
        now = _now()
        try:
            records = await self._store.apply(CreateGroup(
                req.name, req.avatar, req.notice, owner.id, req.join_mode, self.max_members, members, now,
                invited, self._expiry(now), self.invitations.per_invitee, self.invitations.per_inviter))
        except InvitationsFull as exc:
            raise _full(exc) from None
        group = GroupState(records)
        self._state.groups[group.id] = group
        self._state.groups_version += 1  # a new entry in its members' lists
        for member in group.members.values():
            self._entered(group, member)
        await self._reach(group, list(group.members))
        self._edge.refresh(users=list(group.members))
        self._event(group, "created", owner.id, list(group.members), came_or_went=list(group.members))
        self._invited(group, owner.id, records.invitations)
        return group, members, invited

    @_one_at_a_time
    async def dissolve(self, group: GroupState, actor: UserId) -> None:
        _at_least(group, actor, "owner")
        await self._store.apply(DissolveGroup(group.id))
        group.dissolved = True  # whoever holds this object (a change waiting its turn) finds no group
        members = list(group.members)
        invitees = list(group.invitations)  # their invitations went with it (DissolveGroup)
        frame = self._frame(group, "dissolved", actor, [])
        for user in members:
            self._left(group, user)
        for user in invitees:
            self._uninvited(group, user)
        self._state.forget_group(group.id)
        if invitees:
            self._edge.refresh(users=invitees)  # their other nodes drop the invitation from their list
        self._edge.to_users(frame, members + invitees)

    @_one_at_a_time
    async def update(self, group: GroupState, actor: UserId, req: bodies.GroupUpdate) -> None:
        _at_least(group, actor, "admin")
        if req.join_mode is not None and req.join_mode != group.record.join_mode:
            _at_least(group, actor, "owner")
        changes = {k: v for k in ("name", "avatar", "notice", "join_mode") if (v := getattr(req, k)) is not None}
        if changes:
            await self._put_record(group, **changes)
            self._event(group, "updated", actor, [])

    @_one_at_a_time
    async def mute_all(self, group: GroupState, actor: UserId, muted: bool) -> None:
        _at_least(group, actor, "admin")
        if group.record.mute_all != muted:
            await self._put_record(group, mute_all=muted)
            self._event(group, "mute_all" if muted else "unmute_all", actor, [])

    @_one_at_a_time
    async def invite(self, group: GroupState, actor: UserState, users: list[int]) -> tuple[list[UserId], list[UserId]]:
        """Add users: admins always may, members only in an open group. Each is added at
        once if their group_add rule lets the actor add them, else invited. Returns (added,
        invited); users already in are skipped, users already invited (pending) are listed
        as invited and not invited again. A refusal (INVITATIONS_FULL, RATE_LIMITED,
        GROUP_FULL, BLOCKED) adds and invites nobody."""
        member = _member(group, actor.id)
        if member.role == "member" and group.record.join_mode != "open":
            raise RequestError("only admins invite into a group that needs approval", ErrorCode.FORBIDDEN)
        new = [UserId(u) for u in dict.fromkeys(users) if u not in group.members]
        added, invited = await self._consent(actor, new)
        self._check_room(group, len(added))
        now = _now()
        fresh = [u for u in invited if (i := group.invitations.get(u)) is None or i.expires_at <= now]
        stored: list[Invitation] = []
        if fresh:  # first: refused, nobody is added either
            self._charge_invitations(actor.id, len(fresh))
            try:
                stored = await self._store.apply(PutInvitations(
                    group.id, actor.id, fresh, now, self._expiry(now), self.invitations.per_invitee,
                    self.invitations.per_inviter))
            except InvitationsFull as exc:
                raise _full(exc) from None
        await self._add(group, *added)
        if added:
            self._event(group, "joined", actor.id, added, came_or_went=added)
        self._invited(group, actor.id, stored)
        return added, invited

    def invitations_page(self, user: UserState, after: int, limit: int) -> bytes:
        """The user's pending invitations by group id above ``after``, as many as fit a frame."""
        now = _now()
        mine = user.invitations
        ids = sorted(g for g, i in mine.items() if i.expires_at > now)
        shown, more = fit((bodies.encode(bodies.InvitationInfo(group=g, inviter=mine[g].inviter, ts=mine[g].ts,
                                                               expires_at=mine[g].expires_at))
                           for g in itertools.islice(ids, bisect.bisect_right(ids, after), None)), limit)
        return bodies.encode(bodies.InvitationList(invitations=shown, has_more=more))  # type: ignore[arg-type]

    async def invited_group(self, user: UserState, group_id: int) -> GroupState:
        """The group ``user`` answers an invitation of: NOT_FOUND (and the invitation gone
        from the user's list) when it was dissolved."""
        try:
            return await self.get(group_id)
        except RequestError:
            if user.invitations.pop(GroupId(group_id), None) is not None:
                user.changed(convs=False)
            raise

    @_one_at_a_time
    async def accept(self, group: GroupState, user: UserState) -> None:
        """Join on a pending invitation: NOT_FOUND without one (expired, declined, never
        sent), CONFLICT for a member; GROUP_FULL if the group filled up meanwhile. Members
        get "joined" (actor: the inviter)."""
        if user.id in group.members:
            raise RequestError("already a member", ErrorCode.CONFLICT)
        invitation = self._pending(group, user.id)
        self._check_room(group, 1)
        self._charge_change(group)
        await self._add(group, user.id)  # drops the invitation in the same write
        self._event(group, "joined", invitation.inviter, [user.id], came_or_went=[user.id])

    @_one_at_a_time
    async def decline(self, group: GroupState, user: UserState) -> None:
        """Drop a pending invitation (NOT_FOUND without one); nobody is told."""
        self._pending(group, user.id)
        await self._store.apply(DropInvitation(group.id, user.id))
        self._uninvited(group, user.id)
        self._edge.refresh(users=(user.id,))  # the user's other nodes: their list

    @_one_at_a_time
    async def join(self, group: GroupState, user: UserState, message: str) -> str:
        """Join an open group at once ("joined"), or ask to join one that needs approval
        ("pending": its admins get a GROUP_PUSH "join_request")."""
        if user.id in group.members:
            raise RequestError("already a member", ErrorCode.CONFLICT)
        if group.record.join_mode == "open":
            self._check_room(group, 1)
            self._charge_change(group)
            await self._add(group, user.id)
            self._event(group, "joined", user.id, [user.id], came_or_went=[user.id])
            return "joined"
        if user.id in group.requests:
            raise RequestError("a request to join is already pending", ErrorCode.CONFLICT)
        now = _now()
        await self._store.apply(PutJoinRequest(group.id, user.id, message, now))
        group.requests[user.id] = JoinRequest(user.id, message, now)
        self._edge.to_users(self._frame(group, "join_request", user.id, [user.id]), group.admins())
        return "pending"

    @_one_at_a_time
    async def approve(self, group: GroupState, actor: UserId, user: UserId, accept: bool) -> None:
        _at_least(group, actor, "admin")
        if user not in group.requests:
            raise RequestError(f"no request to join from {user}", ErrorCode.NOT_FOUND)
        if accept:
            self._check_room(group, 1)
            await self._add(group, user)  # drops the request in the same write
            self._event(group, "joined", actor, [user], came_or_went=[user])
        else:
            await self._store.apply(DropJoinRequest(group.id, user))
            group.requests.pop(user, None)
            self._edge.to_users(self._frame(group, "rejected", actor, [user]), (user,))

    @_one_at_a_time
    async def quit(self, group: GroupState, user: UserId) -> None:
        member = _member(group, user)
        if member.role == "owner":
            raise RequestError("the owner hands the group over (GROUP_TRANSFER) or dissolves it", ErrorCode.FORBIDDEN)
        self._charge_change(group)
        await self._remove(group, user)
        self._event(group, "left", user, [user], came_or_went=[user])

    @_one_at_a_time
    async def kick(self, group: GroupState, actor: UserId, user: UserId) -> None:
        if user == actor:
            raise RequestError("use GROUP_QUIT to leave", ErrorCode.INVALID_ARGUMENT)
        _outranks(group, actor, user)
        await self._remove(group, user)
        self._event(group, "kicked", actor, [user], came_or_went=[user])

    @_one_at_a_time
    async def set_role(self, group: GroupState, actor: UserId, user: UserId, role: str) -> None:
        _at_least(group, actor, "owner")
        target = _target(group, user)
        if target.role == "owner":
            raise RequestError("the owner's role changes only by GROUP_TRANSFER", ErrorCode.INVALID_ARGUMENT)
        if target.role != role:
            await self._put_member(group, user, role=role)
            self._event(group, "role", actor, [user], role=role)

    @_one_at_a_time
    async def transfer(self, group: GroupState, actor: UserId, user: UserId) -> None:
        _at_least(group, actor, "owner")
        if user == actor:
            raise RequestError("you own it already", ErrorCode.INVALID_ARGUMENT)
        _target(group, user)
        await self._put_member(group, user, role="owner", muted_until=0)
        await self._put_member(group, actor, role="admin")
        await self._put_record(group, owner=user)
        self._event(group, "owner", actor, [user], role="owner")

    @_one_at_a_time
    async def mute(self, group: GroupState, actor: UserId, user: UserId, until: int) -> None:
        _outranks(group, actor, user)
        await self._put_member(group, user, muted_until=until)
        self._event(group, "muted" if until else "unmuted", actor, [user], until=until)

    @_one_at_a_time
    async def leave_for_good(self, group: GroupState, user: UserId) -> str:
        """``user``'s account is being deleted: they leave the group. A group they own is
        handed to the admin who joined first, else to the member who joined first (GROUP_PUSH
        "owner" from the leaving user), and dissolved only if nobody else is in it. Returns
        "left", "handed_over", "dissolved", or "" (not a member)."""
        member = group.members.get(user)
        if member is None:
            return ""
        if member.role == "owner":
            others = [m for m in group.members.values() if m.user != user]
            if not others:
                await self._store.apply(DissolveGroup(group.id))
                group.dissolved = True
                frame = self._frame(group, "dissolved", user, [])
                self._left(group, user)
                self._state.forget_group(group.id)
                self._edge.to_users(frame, (user,))
                return "dissolved"
            admins = [m for m in others if m.role == "admin"]
            heir = min(admins or others, key=lambda m: (m.joined_at, m.user))
            await self._put_member(group, heir.user, role="owner", muted_until=0)
            await self._put_record(group, owner=heir.user)
            await self._remove(group, user)
            self._event(group, "owner", user, [heir.user], role="owner")
            self._event(group, "left", user, [user], came_or_went=[user])
            return "handed_over"
        await self._remove(group, user)
        self._event(group, "left", user, [user], came_or_went=[user])
        return "left"

    # -- helpers ------------------------------------------------------------------------------

    async def _consent(self, actor: UserState, users: list[UserId]) -> tuple[list[UserId], list[UserId]]:
        """Split ``users`` into those ``actor`` may add at once and those who get an
        invitation, by each one's group_add rule (from memory if loaded here, else one store
        read for all). BLOCKED if one of them blocked the actor, USER_NOT_FOUND if one does
        not exist."""
        for user in users:
            if user in actor.blocked_by:
                raise RequestError(f"user {user} blocked you", ErrorCode.BLOCKED)
        loaded = self._state.users
        rules = {u: loaded[u].group_add for u in users if u in loaded}
        unknown = [u for u in users if u not in rules]
        if unknown:
            rules.update(await self._store.group_add_rules(unknown))
        added: list[UserId] = []
        invited: list[UserId] = []
        for user in users:
            rule = rules.get(user)
            if rule is None:
                raise RequestError(f"no user {user}", ErrorCode.USER_NOT_FOUND)
            rule = rule or self.invitations.add_default
            if rule == "anyone" or (rule == "friends" and user in actor.friends):
                added.append(user)
            else:
                invited.append(user)
        return added, invited

    def _charge_invitations(self, inviter: UserId, count: int) -> None:
        if count:
            self._invites.charge(inviter, count)  # RATE_LIMITED past the account's budget

    def _expiry(self, now: int) -> int:
        return now + int(self.invitations.ttl * 1000)

    def _pending(self, group: GroupState, user: UserId) -> Invitation:
        invitation = group.invitations.get(user)
        if invitation is None or invitation.expires_at <= _now():
            self._uninvited(group, user)  # an expired one: gone from memory too
            raise RequestError(f"no pending invitation to group {group.id}", ErrorCode.NOT_FOUND)
        return invitation

    def _invited(self, group: GroupState, actor: UserId, invitations: list[Invitation]) -> None:
        """Durable invitations: in memory, then each invitee's nodes reload them, then the
        invitee gets GROUP_PUSH "invited" (one frame each: no invitee learns of the others)."""
        if not invitations:
            return
        for invitation in invitations:
            group.invitations[invitation.invitee] = invitation
            user = self._state.users.get(invitation.invitee)
            if user is not None:
                user.invitations[group.id] = invitation
                user.changed(convs=False)
        self._edge.refresh(users=[i.invitee for i in invitations])
        for invitation in invitations:
            self._edge.to_users(self._frame(group, "invited", actor, [invitation.invitee]), (invitation.invitee,))

    def _uninvited(self, group: GroupState, user_id: UserId) -> None:
        """The invitation of ``user_id`` is gone from the store: from memory too."""
        group.invitations.pop(user_id, None)
        user = self._state.users.get(user_id)
        if user is not None and user.invitations.pop(group.id, None) is not None:
            user.changed(convs=False)

    def _check_room(self, group: GroupState, adding: int) -> None:
        if len(group.members) + adding > group.record.max_members:
            raise RequestError(f"the group holds at most {group.record.max_members} members", ErrorCode.GROUP_FULL)

    async def _add(self, group: GroupState, *users: UserId) -> None:
        """Make ``users`` members. A request to join one of them has pending is settled
        by it (PutMember drops it in the same write), however they came in: approved, or
        invited while asking, which must not leave an approvable request behind."""
        # queued together, so they share one commit (an invite of 500 is one batch, not 500)
        now = _now()
        pending = [self._store.apply(PutMember(group.id, user, "member", 0, now)) for user in users]
        results = await asyncio.gather(*pending, return_exceptions=True)
        for member in results:
            if not isinstance(member, BaseException):  # memory follows what is durable
                group.members[member.user] = member
                group.requests.pop(member.user, None)
                self._uninvited(group, member.user)  # PutMember dropped it too
                self._entered(group, member)
        self._state.group_changed(group)
        await self._reach(group, [m.user for m in results if not isinstance(m, BaseException)])
        for failed in results:
            if isinstance(failed, BaseException):
                raise failed

    async def _remove(self, group: GroupState, user: UserId) -> None:
        await self._store.apply(DropMember(group.id, user))
        self._left(group, user)

    async def _put_member(self, group: GroupState, user: UserId, **changes: object) -> None:
        """Change a member's role or mute: durable first, then in memory."""
        member = msgspec.structs.replace(group.members[user], **changes)
        stored = await self._store.apply(PutMember(group.id, user, member.role, member.muted_until, _now()))
        group.members[user] = stored
        self._state.group_changed(group)

    async def _put_record(self, group: GroupState, **changes: object) -> None:
        """Change the group's record: durable first, then in memory."""
        record = msgspec.structs.replace(group.record, **changes)
        await self._store.apply(PutGroup(record))
        group.record = record
        self._state.group_changed(group)

    async def _reach(self, group: GroupState, users: list[UserId]) -> None:
        """New members online on other nodes: those nodes take the group's frames before
        the change is announced, so a message sent right after it reaches them (they hold
        it until they have reloaded the member: ``Delivery.deliver``)."""
        if self._edge.reach is not None and users:
            await self._edge.reach(group_conv(group.id), users)

    def _entered(self, group: GroupState, member: Member) -> None:
        conv = group_conv(group.id)
        self._state.touch_user(member.user)
        user = self._state.users.get(member.user)
        if user is not None:
            user.convs[conv] = UserConv(conv, read_seq=member.joined_seq, joined_seq=member.joined_seq)
            user.changed(conv)
        self._edge.joined(conv, member.user)

    def _left(self, group: GroupState, user_id: UserId) -> None:
        conv = group_conv(group.id)
        group.members.pop(user_id, None)
        self._state.group_changed(group)
        self._state.touch_user(user_id)
        user = self._state.users.get(user_id)
        if user is not None and user.convs.pop(conv, None) is not None:
            user.changed(conv)
        self._edge.left(conv, user_id)

    def _frame(self, group: GroupState, event: str, actor: UserId, users: list[UserId], role: str = "",
               until: int = 0) -> bytes:
        body = bodies.GroupEvent(event=event, group=group.id, actor=actor, users=users, role=role, until=until, ts=_now())
        return encode_frame(Op.GROUP_PUSH, 0, group.id, bodies.encode(body))

    def _event(self, group: GroupState, event: str, actor: UserId, users: list[UserId], role: str = "",
               until: int = 0, came_or_went: Iterable[UserId] = ()) -> None:
        """The GROUP_PUSH to every member; ``came_or_went`` (members who just joined or
        left) get it by name, since other nodes may not count them as members yet or any
        more, and the conversation's push skips them, so each device gets it once."""
        # ahead of the push: the other nodes read the change back before their clients hear of it
        self._edge.refresh(users=came_or_went, groups=(group.id,))
        frame = self._frame(group, event, actor, users, role, until)
        self._edge.to_conv(frame, group_conv(group.id), skip_users=came_or_went)
        if came_or_went:
            self._edge.to_users(frame, came_or_went)


def _member(group: GroupState, user: UserId) -> Member:
    member = group.members.get(user)
    if member is None:
        raise RequestError(f"not a member of group {group.id}", ErrorCode.FORBIDDEN)
    return member


def _target(group: GroupState, user: UserId) -> Member:
    member = group.members.get(user)
    if member is None:
        raise RequestError(f"{user} is not a member of group {group.id}", ErrorCode.NOT_FOUND)
    return member


def _at_least(group: GroupState, user: UserId, role: str) -> Member:
    member = _member(group, user)
    if ROLE_RANK[member.role] < ROLE_RANK[role]:
        raise RequestError(f"needs the {role} role", ErrorCode.FORBIDDEN)
    return member


def _outranks(group: GroupState, actor: UserId, user: UserId) -> None:
    me = _at_least(group, actor, "admin")
    target = _target(group, user)
    if ROLE_RANK[me.role] <= ROLE_RANK[target.role]:
        raise RequestError(f"a {me.role} cannot act on a {target.role}", ErrorCode.FORBIDDEN)


def _full(exc: InvitationsFull) -> RequestError:
    return RequestError(str(exc), ErrorCode.INVITATIONS_FULL)


def _now() -> int:
    return int(time.time() * 1000)
