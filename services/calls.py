"""Call signaling for 1:1 audio and video calls. The server relays the SDP offer and
answer and the ICE candidates between two devices; no media passes through it.

The state machine (one ``CallRecord`` per call):

    CALL_INVITE                         -> ringing   (every device of the callee rings)
    ringing  --CALL_ACCEPT (a callee device)-> accepted  (the other callee devices stop)
    ringing  --CALL_REJECT (a callee device)-> ended, "rejected"
    ringing  --CALL_CANCEL (the calling device)-> ended, "cancelled"
    ringing  --ring timeout, or the calling device leaves-> ended, "missed" / "cancelled"
    accepted --CALL_HANGUP (either device in the call), or one of them leaves-> ended, "answered"

A user is in at most one call: an invite to (or from) a user in a call is refused with
BUSY. ICE candidates go from one device in the call to the other, once it is accepted.
When a call ends, a call record (content type 8) is stored in the two users' private
conversation and pushed like any message (sender: the caller).

Where the state lives: in the Routes (``start_call``, ``update_call``, ``end_call``:
compare-and-set on the state, so of racing accepts, rejects, cancels and timeouts
exactly one wins, whatever node each arrives on). The record expires (the ring timeout
plus a grace while ringing, ``call_ttl`` once accepted) so that a call left behind by a
crashed node frees its users. Events go to devices through ``Delivery``, which crosses
nodes; the ring timer runs on the caller's node.
"""
from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Awaitable, Callable, Coroutine

import msgspec

from ..backends.protocols import CallRecord, Routes, UserId
from ..core_ext import bodies, content
from ..core_ext.codec import encode_frame
from ..core_ext.errors import RequestError
from ..core_ext.protocol import ErrorCode, Op
from .conversations import private_conv
from .presence import Audience
from .quota import UserBuckets
from .state import UserState

__all__ = ["Calls", "RING_GRACE"]

log = logging.getLogger("edgeim.calls")

#: seconds a ringing call outlives its ring timeout in the Routes (the timer's node may die)
RING_GRACE = 30.0
RINGING, ACCEPTED = "ringing", "accepted"

Device = tuple[UserId, str]


class Calls:
    """``record(conv, sender, to, cmid, type, text, members)`` hands a server-written
    message to the pipeline, which appends it and, once durable, moves the lists and
    pushes it to both users' devices; ``to_users`` and ``to_terminal`` push the calls'
    own frames (``Delivery``)."""

    def __init__(self, routes: Routes, audience: Audience, user_exists: Callable[[UserId], Awaitable[bool]],
                 record: Callable[..., None],
                 to_users: Callable[..., None], to_terminal: Callable[[bytes, UserId, str], None],
                 spawn: Callable[[Coroutine[Any, Any, Any]], object],
                 call_later: Callable[[float, Callable[[], None]], Any], ring_timeout: float, call_ttl: float,
                 now_ms: Callable[[], int] = lambda: int(time.time() * 1000), invites_per_minute: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._routes = routes
        self._audience = audience
        self._user_exists = user_exists
        self._record = record
        self._to_users = to_users
        self._to_terminal = to_terminal
        self._spawn = spawn
        self._call_later = call_later
        self._ring_timeout = ring_timeout
        self._call_ttl = call_ttl
        self._now_ms = now_ms
        #: devices on this node -> the call they invited or accepted (to end it if they leave)
        self._devices: dict[Device, int] = {}
        #: ring timers of the calls this node started
        self._timers: dict[int, Any] = {}
        # an invitation rings every device of the callee and, if busy, stores a call record
        self._invites = UserBuckets(invites_per_minute / 60.0, float(invites_per_minute),
                                    f"{invites_per_minute} call invitations a minute", clock)

    def forget(self, user: UserId) -> None:
        """The user has no session here any more (a spent budget is kept until refilled)."""
        self._invites.forget(user)

    # -- requests ---------------------------------------------------------------------------

    async def invite(self, me: UserState, terminal: str, to: UserId, kind: str, sdp: str) -> bodies.CallStarted:
        """Ring every device of ``to``. INVALID_ARGUMENT for oneself, USER_NOT_FOUND, the
        1:1 audience's BLOCKED or NOT_FRIENDS, BUSY if either user is in a call (a busy
        callee gets a call record), RATE_LIMITED past the caller's invitations a minute."""
        self._invites.charge(me.id)  # RATE_LIMITED past the account's budget
        if to == me.id:
            raise RequestError("you cannot call yourself", ErrorCode.INVALID_ARGUMENT)
        if to not in me.friends and not await self._user_exists(to):
            raise RequestError(f"no user {to}", ErrorCode.USER_NOT_FOUND)
        self._audience.check(me, to)
        now = self._now_ms()
        call = CallRecord(secrets.randbits(63) or 1, me.id, terminal, to, kind, RINGING, now)
        busy = await self._routes.start_call(call, self._ring_timeout + RING_GRACE)
        if busy == me.id:
            raise RequestError("you are in a call already", ErrorCode.BUSY)
        if busy is not None:
            self._store_record(call, "busy", 0)
            raise RequestError(f"user {to} is in another call", ErrorCode.BUSY)
        self._devices[(me.id, terminal)] = call.id
        self._timers[call.id] = self._call_later(self._ring_timeout, lambda: self._spawn(self._timed_out(call.id)))
        self._to_users(self._event("ring", call, terminal, sdp=sdp), (to,))
        return bodies.CallStarted(call=call.id, ts=now)

    async def accept(self, me: UserState, terminal: str, call_id: int, sdp: str) -> None:
        """Answer on this device: the caller's device gets the answer, the callee's other
        devices stop ringing. CONFLICT if the call no longer rings (answered elsewhere)."""
        call = await self._party(me.id, call_id)
        if me.id != call.callee:
            raise RequestError("only the callee accepts a call", ErrorCode.FORBIDDEN)
        self._ringing(call)
        accepted = msgspec.structs.replace(call, state=ACCEPTED, callee_terminal=terminal, accepted_at=self._now_ms())
        if not await self._routes.update_call(accepted, RINGING, self._call_ttl):
            raise RequestError("the call is no longer ringing", ErrorCode.CONFLICT)
        self._stop_timer(call.id)
        self._devices[(me.id, terminal)] = call.id
        self._to_terminal(self._event("accepted", accepted, terminal, sdp=sdp), call.caller, call.caller_terminal)
        self._to_users(self._event("answered_elsewhere", accepted, terminal), (me.id,), me.id, terminal)

    async def reject(self, me: UserState, terminal: str, call_id: int) -> None:
        call = await self._party(me.id, call_id)
        if me.id != call.callee:
            raise RequestError("only the callee rejects a call (the caller cancels it)", ErrorCode.FORBIDDEN)
        self._ringing(call)
        ended = await self._end(call, RINGING)
        frame = self._event("rejected", ended, terminal)
        self._to_terminal(frame, ended.caller, ended.caller_terminal)
        self._to_users(frame, (me.id,), me.id, terminal)  # the callee's other devices stop ringing
        self._store_record(ended, "rejected", 0)

    async def cancel(self, me: UserState, terminal: str, call_id: int) -> None:
        call = await self._party(me.id, call_id)
        if (me.id, terminal) != (call.caller, call.caller_terminal):
            raise RequestError("only the calling device cancels a call", ErrorCode.FORBIDDEN)
        self._ringing(call)
        self._cancelled(await self._end(call, RINGING), terminal)

    async def hangup(self, me: UserState, terminal: str, call_id: int) -> None:
        call = await self._party(me.id, call_id)
        peer = self._peer(call, (me.id, terminal))
        self._hung_up(await self._end(call, ACCEPTED), peer, terminal)

    async def ice(self, me: UserState, terminal: str, call_id: int, candidate: str) -> None:
        call = await self._party(me.id, call_id)
        peer = self._peer(call, (me.id, terminal))
        self._to_terminal(self._event("ice", call, terminal, candidate=candidate), *peer)

    def departed(self, user: UserId, terminal: str) -> None:
        """A session of this node is gone: a call it was ringing from is cancelled, a call
        it was in is hung up."""
        call_id = self._devices.pop((user, terminal), None)
        if call_id is not None:
            self._spawn(self._abandon(call_id, (user, terminal)))

    # -- transitions ------------------------------------------------------------------------

    async def _abandon(self, call_id: int, device: Device) -> None:
        call = await self._routes.get_call(call_id)
        if call is None:
            return
        if call.state == RINGING and device == (call.caller, call.caller_terminal):
            ended = await self._routes.end_call(call_id, RINGING)
            if ended is not None:
                self._stop_timer(call_id)
                self._cancelled(ended, device[1])
        elif call.state == ACCEPTED and device in _devices(call):
            ended = await self._routes.end_call(call_id, ACCEPTED)
            if ended is not None:
                self._hung_up(ended, self._peer(ended, device), device[1])

    async def _timed_out(self, call_id: int) -> None:
        self._timers.pop(call_id, None)
        ended = await self._routes.end_call(call_id, RINGING)
        if ended is None:  # answered or ended meanwhile
            return
        self._devices.pop((ended.caller, ended.caller_terminal), None)
        frame = self._event("timeout", ended, "")
        self._to_terminal(frame, ended.caller, ended.caller_terminal)
        self._to_users(frame, (ended.callee,))
        self._store_record(ended, "missed", 0)

    def _cancelled(self, ended: CallRecord, terminal: str) -> None:
        self._devices.pop((ended.caller, ended.caller_terminal), None)
        self._to_users(self._event("cancelled", ended, terminal), (ended.callee,))
        self._store_record(ended, "cancelled", 0)

    def _hung_up(self, ended: CallRecord, peer: Device, terminal: str) -> None:
        for device in _devices(ended):
            self._devices.pop(device, None)
        duration = max(0, self._now_ms() - ended.accepted_at)
        self._to_terminal(self._event("hangup", ended, terminal, duration_ms=duration), *peer)
        self._store_record(ended, "answered", duration)

    async def _end(self, call: CallRecord, state: str) -> CallRecord:
        ended = await self._routes.end_call(call.id, state)
        if ended is None:
            raise RequestError(f"call {call.id} is no longer {state}", ErrorCode.CONFLICT)
        self._stop_timer(call.id)
        return ended

    # -- helpers ----------------------------------------------------------------------------

    async def _party(self, user: UserId, call_id: int) -> CallRecord:
        """The call, if ``user`` is its caller or callee; NOT_FOUND otherwise (an ended call,
        or someone else's: whose calls exist is not told)."""
        call = await self._routes.get_call(call_id)
        if call is None or user not in (call.caller, call.callee):
            raise RequestError(f"no call {call_id}", ErrorCode.NOT_FOUND)
        return call

    @staticmethod
    def _ringing(call: CallRecord) -> None:
        if call.state != RINGING:
            raise RequestError(f"call {call.id} was answered already", ErrorCode.CONFLICT)

    @staticmethod
    def _peer(call: CallRecord, device: Device) -> Device:
        """The other device of an accepted call; CONFLICT while it rings, FORBIDDEN for a
        device that is not in it."""
        if call.state != ACCEPTED:
            raise RequestError(f"call {call.id} is not answered yet (cancel or reject it)", ErrorCode.CONFLICT)
        caller, callee = _devices(call)
        if device == caller:
            return callee
        if device == callee:
            return caller
        raise RequestError(f"this device is not in call {call.id}", ErrorCode.FORBIDDEN)

    def _stop_timer(self, call_id: int) -> None:
        timer = self._timers.pop(call_id, None)
        if timer is not None:
            timer.cancel()

    def _event(self, event: str, call: CallRecord, terminal: str, *, sdp: str = "", candidate: str = "",
               duration_ms: int = 0) -> bytes:
        body = bodies.CallEvent(event=event, call=call.id, caller=call.caller, callee=call.callee, kind=call.kind,
                                terminal=terminal, sdp=sdp, candidate=candidate, duration_ms=duration_ms,
                                ts=self._now_ms())
        return encode_frame(Op.CALL_PUSH, 0, call.id, bodies.encode(body))

    def _store_record(self, call: CallRecord, status: str, duration_ms: int) -> None:
        """The call record: a type 8 message from the caller in the two users' private
        conversation (once per call: its cmid is the call's), pushed to both."""
        record = {"call": str(call.id), "kind": call.kind, "caller": call.caller, "callee": call.callee,
                  "status": status, "duration_ms": duration_ms}
        try:
            self._record(private_conv(call.caller, call.callee), call.caller, call.callee, f"call:{call.id}",
                         content.CALL, content.stored(content.CALL, record), (call.caller, call.callee))
        except Exception:  # the node is stopping: the call ended, its record is lost
            log.exception("storing a call record failed", extra={"call": call.id})


def _devices(call: CallRecord) -> tuple[Device, Device]:
    return (call.caller, call.caller_terminal), (call.callee, call.callee_terminal)
