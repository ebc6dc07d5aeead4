"""One load-generator process of ``im bench run``: uvloop + picows, its share of the
virtual users, one JTL part.

The parent (bench/runner.py) spawns several of these with ``process_main``; each talks to
it over a pipe:

    child -> ("ready", n)            its users that do not sample ``login`` are connected and
                                     logged in (not timed)
    parent -> ("start", t0)          t0: the CLOCK_MONOTONIC instant the timed part starts
    child -> ("progress", (samples, errors))   about once a second
    child -> ("done", None)          every lane finished; connections stay open (RSS)
    parent -> ("close", None)
    child -> ("result", {...})       counts, precise samples; the JTL part is complete

A virtual user is one WebSocket connection (a JMeter thread). It starts at t0 + its share
of the ramp-up, samples ``login`` once if its group has it, then runs ``in_flight`` lanes,
each looping over the group's other samplers (think time between two) until the group's
duration (counted from t0, ramp-up included, as JMeter's scheduler does) or loop count.

``kind`` picks the server the frames go to: "edgeim" (the node), "ceiling" (the bare picows
relay of bench/baseline_relay.py --route, sent byte-for-byte the same frames), or
"centrifugo" or "centrifugo_durable" (its JSON protocol; only ``login`` and ``send_1to1``).
"""
from __future__ import annotations

import array
import asyncio
import os
import struct
import time
from typing import Any

from .scenario import SEEDED, Sampler, Scenario, ThreadGroup

CONTENT = "hello, this is a short chat message"  # as bench/send_throughput.py


def _cmid() -> str:
    """A new message's cmid as both SDKs make one: 32 random hex digits. (Counters per
    user would hand the store keys in order, which a real client does not.)"""
    return os.urandom(16).hex()
#: samplers whose SEND_ACK is the 1:1 message reply_1to1 quotes and edit edits
_ONE_TO_ONE = frozenset({"send_1to1", "reply_1to1", "edit"})
SWEEP_S = 0.25  # how often replies that are overdue are failed
DELIVERY_SAMPLE = 8  # one MSG_PUSH in this many has its delivery latency measured
#: loopback source addresses connections to a loopback node are spread over (127.0.1.1 ...)
SOURCE_ADDRESSES = 64


def source_address(url: str, index: int) -> tuple[str, int] | None:
    """Where user ``index``'s connection to ``url`` binds, or None (the kernel picks).

    Every connection from one address to one node needs its own source port, and the kernel
    hands out half of its ~28K ephemeral ports before it starts searching the other half on
    each connect: past ~14K connections to one node from 127.0.0.1, each connect() blocked
    its load process for milliseconds, and a 51K-user run stalled at 42K. Loopback is a whole
    /8, so users to a loopback node come from 64 addresses, a few hundred ports each."""
    host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
    if not host.startswith("127."):
        return None
    return (f"127.0.1.{1 + index % SOURCE_ADDRESSES}", 0)


def process_main(pipe: Any, spec: dict[str, Any]) -> None:
    """Entry point of a spawned load process (see the module docstring)."""
    from .benchlib import run_client
    run_client(pipe, _run, spec)


class _Pending:
    """Replies awaited on all connections of this process, with their deadlines, so one
    sweeper fails overdue ones instead of a timer per request."""

    def __init__(self) -> None:
        self.deadlines: dict[asyncio.Future[Any], float] = {}

    def add(self, future: asyncio.Future[Any], deadline: float) -> None:
        self.deadlines[future] = deadline

    def discard(self, future: asyncio.Future[Any]) -> None:
        self.deadlines.pop(future, None)

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.monotonic()
            for future, deadline in list(self.deadlines.items()):
                if deadline <= now:
                    del self.deadlines[future]
                    if not future.done():
                        future.set_exception(TimeoutError("no reply"))


async def _run(pipe: Any, spec: dict[str, Any]) -> dict[str, Any]:
    from .jtl import JtlWriter

    loop = asyncio.get_running_loop()
    scenario: Scenario = spec["scenario"]
    kind: str = spec["kind"]
    users: list[dict[str, Any]] = spec["users"]
    groups = {g.name: g for g in scenario.groups}
    labels = sorted({s.label for g in scenario.groups for s in g.samplers})
    label_index = {label: i for i, label in enumerate(labels)}
    pending = _Pending()
    writer = JtlWriter(spec["jtl"])
    # precise copies of the rows (JTL elapsed is whole ms): ts ms, elapsed ms, label, ok, bytes, sent
    precise = {"ts": array.array("q"), "elapsed": array.array("d"), "label": array.array("B"),
               "ok": array.array("B"), "bytes": array.array("I"), "sent": array.array("I")}
    counts = {"samples": 0, "errors": 0, "pushes": 0, "push_bytes": 0}
    active = {g.name: 0 for g in scenario.groups}
    proto = _make_protocol(kind, spec, counts, pending)

    def record(t_wall_ms: int, elapsed_ms: float, sampler: Sampler, code: str, message: str, thread: str,
               ok: bool, failure: str, nbytes: int, sent: int, group: str, url: str, connect_ms: float = 0.0) -> None:
        counts["samples"] += 1
        if not ok:
            counts["errors"] += 1
        writer.write(t_wall_ms, elapsed_ms, sampler.label, code, message, thread, ok, failure, nbytes, sent,
                     active[group], sum(active.values()), url, connect_ms)
        precise["ts"].append(t_wall_ms)
        precise["elapsed"].append(elapsed_ms)
        precise["label"].append(label_index[sampler.label])
        precise["ok"].append(1 if ok else 0)
        precise["bytes"].append(nbytes)
        precise["sent"].append(sent)

    # untimed: users whose group does not sample login connect and log in now
    untimed = [u for u in users if not (groups[u["group"]].samplers and groups[u["group"]].samplers[0].type == "login")]
    sem = asyncio.Semaphore(200)

    async def connect_untimed(user: dict[str, Any]) -> None:
        async with sem:
            user["conn"] = await proto.connect(user)
            await proto.login(user, timeout=60.0)

    await asyncio.gather(*(connect_untimed(u) for u in untimed))
    sweeper = asyncio.ensure_future(pending.sweep())
    pipe.send(("ready", len(untimed)))
    tag, t0 = await loop.run_in_executor(None, pipe.recv)
    assert tag == "start"

    async def progress() -> None:
        while True:
            await asyncio.sleep(1.0)
            pipe.send(("progress", (counts["samples"], counts["errors"])))

    reporter = asyncio.ensure_future(progress())

    async def lane(user: dict[str, Any], group: ThreadGroup, samplers: tuple[Sampler, ...], end: float) -> None:
        loops = 0
        thread = user["thread"]
        while True:
            for sampler in samplers:
                if time.monotonic() >= end:
                    return
                await proto.sample(user, sampler, record, thread, group.name)
                if group.think_time:
                    await asyncio.sleep(group.think_time)
            loops += 1
            if group.loops is not None and loops >= group.loops:
                return

    async def virtual_user(user: dict[str, Any]) -> None:
        group = groups[user["group"]]
        start = t0 + group.ramp_up * user["rank"] / max(1, group.users)
        end = t0 + group.duration if group.duration is not None else float("inf")
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        active[group.name] += 1
        try:
            samplers = group.samplers
            if samplers and samplers[0].type == "login":
                if not await proto.timed_login(user, samplers[0], record, user["thread"], group.name):
                    return
                samplers = samplers[1:]
                if group.loops == 1 and not samplers:
                    return
            if samplers:
                await asyncio.gather(*(lane(user, group, samplers, end) for _ in range(group.in_flight)))
        finally:
            active[group.name] -= 1

    await asyncio.gather(*(virtual_user(u) for u in users))
    # the pushes of the last sends may still be on the wire (a 10,000-member fan-out takes
    # seconds): count until none arrives for half a second, at most 15 s
    deadline = time.monotonic() + 15.0
    last, still = counts["pushes"], 0
    while still < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        still = still + 1 if counts["pushes"] == last else 0
        last = counts["pushes"]
    reporter.cancel()
    pipe.send(("progress", (counts["samples"], counts["errors"])))
    writer.close()
    pipe.send(("done", None))
    tag, _ = await loop.run_in_executor(None, pipe.recv)
    sweeper.cancel()
    await proto.close_all(users)
    with open("/proc/self/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return {"samples": counts["samples"], "errors": counts["errors"], "pushes": counts["pushes"],
            "push_bytes": counts["push_bytes"], "labels": labels, "cpu_s": time.process_time(),
            "rss_peak_kib": rss, "precise": {k: v.tobytes() for k, v in precise.items()},
            "delivery_ms": proto.delivery.tobytes() if hasattr(proto, "delivery") else b""}


# -- protocols ---------------------------------------------------------------------------------------

def _make_protocol(kind: str, spec: dict[str, Any], counts: dict[str, int], pending: _Pending) -> Any:
    if kind.startswith("centrifugo"):
        return _Centrifugo(spec, counts, pending)
    return _Edgeim(kind, spec, counts, pending)


class _Edgeim:
    """edgeim's binary frames, to the node or (kind "ceiling") to the relay, which answers
    the same frames without decoding them; assertions on reply bodies run on the node only."""

    def __init__(self, kind: str, spec: dict[str, Any], counts: dict[str, int], pending: _Pending) -> None:
        from edgeim.core_ext import bodies
        from edgeim.core_ext.codec import encode_frame
        from edgeim.core_ext.protocol import Flag, Op

        from .benchclient import PASSWORD
        self.kind = kind
        self.counts = counts
        self.pending = pending
        self.bodies, self.encode_frame, self.Op, self.Flag = bodies, encode_frame, Op, Flag
        self.password = PASSWORD
        self.op_names = {int(op): op.name for op in Op}
        self.op_error, self.op_push = int(Op.ERROR), int(Op.MSG_PUSH)
        self.op_send_ack = int(Op.SEND_ACK)
        self.last_seq: dict[tuple[int, str], int] = {}
        #: sampled delivery latencies, ms: server accept (MSG_PUSH's ts) to receipt here
        self.delivery = array.array("d")
        self._pushes_seen = 0

        import msgspec

        from edgeim.core_ext.protocol import HEADER_SIZE

        class _Ts(msgspec.Struct):
            ts: int
        self._ts = msgspec.msgpack.Decoder(_Ts)
        self._body_at = HEADER_SIZE

    async def connect(self, user: dict[str, Any], timeout: float = 60.0) -> Any:
        from picows import ws_connect

        from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION

        from .benchclient import Conn
        conn = Conn(user["name"])
        counts = self.counts

        def on_push(c: Any, op: int, payload: memoryview, now: float) -> None:
            if op == self.op_push:
                counts["pushes"] += 1
                counts["push_bytes"] += len(payload)
                self._pushes_seen += 1
                # one in N: decoding costs the load generator. Only the node's pushes have a
                # body: the ceiling's are zero padding, and a decode error raised here would
                # make picows close the receiver's connection (its 8th push lost every later one)
                if self.kind == "edgeim" and self._pushes_seen % DELIVERY_SAMPLE == 0:
                    self.delivery.append(time.time() * 1000.0 - self._ts.decode(payload[self._body_at:]).ts)

        conn.on_push = on_push
        # the handshake gets the sampler's whole timeout: under a connection storm the node
        # answers late, and picows's 5 s default would count that as a failure of its own
        await ws_connect(lambda: conn, user["url"], max_frame_size=MAX_FRAME_SIZE, websocket_handshake_timeout=timeout,
                         extra_headers={"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"},
                         local_addr=source_address(user["url"], user["index"]))
        return conn

    def _login_frame(self, user: dict[str, Any], req_id: int) -> bytes:
        if self.kind == "ceiling":
            # the relay registers the connection under target and its groups from the body
            body = struct.pack(f"<{len(user['group_ids'])}Q", *user["group_ids"])
            return self.encode_frame(int(self.Op.LOGIN), req_id, user["user_id"], body)
        body = self.bodies.encode(self.bodies.Login(username=user["name"], password=self.password, terminal="bench"))
        return self.encode_frame(int(self.Op.LOGIN), req_id, 0, body)

    async def _exchange(self, conn: Any, frame: bytes, req_id: int, timeout: float) -> tuple[int, bytes]:
        if conn.transport is None or conn.is_closed:
            raise ConnectionError(f"{conn.name}: not connected")
        future: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        conn.pending[req_id] = future
        self.pending.add(future, time.monotonic() + timeout)
        conn.send_frame(frame)
        try:
            return await future
        finally:
            self.pending.discard(future)
            conn.pending.pop(req_id, None)

    async def login(self, user: dict[str, Any], timeout: float) -> None:
        conn = user["conn"]
        if conn.transport is None:  # closed straight after the handshake
            raise ConnectionError(f"{user['name']}: connection closed before LOGIN")
        req_id = conn.new_req()
        op, body = await self._exchange(conn, self._login_frame(user, req_id), req_id, timeout)
        if op == self.op_error:
            raise RuntimeError(f"{user['name']}: LOGIN refused: {self.bodies.decode(body, self.bodies.Error)}")

    async def timed_login(self, user: dict[str, Any], sampler: Sampler, record: Any, thread: str, group: str) -> bool:
        t_wall = int(time.time() * 1000)
        t0 = time.perf_counter()
        try:
            user["conn"] = await asyncio.wait_for(self.connect(user, sampler.timeout), sampler.timeout)
        except Exception as exc:  # OSError, TimeoutError, picows's own handshake errors
            elapsed = (time.perf_counter() - t0) * 1000
            record(t_wall, elapsed, sampler, f"Non HTTP response code: {type(exc).__name__}", str(exc)[:200],
                   thread, False, "", 0, 0, group, user["url"], elapsed)
            return False
        connect_ms = (time.perf_counter() - t0) * 1000
        conn = user["conn"]
        req_id = conn.new_req()
        frame = self._login_frame(user, req_id)
        return self._judge(await self._timed(conn, frame, req_id, sampler), t_wall, t0, sampler, record, thread,
                           group, user, len(frame), connect_ms)

    async def _timed(self, conn: Any, frame: bytes, req_id: int, sampler: Sampler) -> tuple[int, bytes] | BaseException:
        try:
            return await self._exchange(conn, frame, req_id, sampler.timeout)
        except (TimeoutError, ConnectionError) as exc:
            return exc

    def _judge(self, reply: tuple[int, bytes] | BaseException, t_wall: int, t0: float, sampler: Sampler,
               record: Any, thread: str, group: str, user: dict[str, Any], sent: int, connect_ms: float = 0.0) -> bool:
        elapsed = (time.perf_counter() - t0) * 1000
        if isinstance(reply, BaseException):
            ok = "ack" not in sampler.assertions
            record(t_wall, elapsed, sampler, f"Non HTTP response code: {type(reply).__name__}", str(reply), thread,
                   ok, "" if ok else f"ack: {reply} within {sampler.timeout:g} s", 0, sent, group, user["url"],
                   connect_ms)
            return ok
        op, body = reply
        nbytes = 20 + len(body)
        if op == self.op_error:
            error = self.bodies.decode(body, self.bodies.Error)
            ok = "no_error" not in sampler.assertions
            record(t_wall, elapsed, sampler, str(error.code), error.message, thread, ok,
                   "" if ok else f"no_error: ERROR {error.code} {error.message}", nbytes, sent, group, user["url"],
                   connect_ms)
            return ok
        failure = ""
        if self.kind == "edgeim" and "seq_in_order" in sampler.assertions:
            failure = self._seq_check(user, sampler, body)
        record(t_wall, elapsed, sampler, self.op_names.get(op, str(op)), "OK", thread, not failure, failure,
               nbytes, sent, group, user["url"], connect_ms)
        return not failure

    def _seq_check(self, user: dict[str, Any], sampler: Sampler, body: bytes) -> str:
        bodies = self.bodies
        if sampler.type in ("send_1to1", "group_send", "reply_1to1"):
            ack = bodies.decode(body, bodies.SendAck)
            key = (id(user["conn"]), ack.conv)
            last = self.last_seq.get(key, 0)
            self.last_seq[key] = max(last, ack.seq)
            return "" if ack.seq > last else f"seq_in_order: ack seq {ack.seq} after {last} in {ack.conv}"
        if sampler.type in ("sync", "history"):
            page = bodies.decode(body, bodies.Page)
            seqs = [m.seq for m in page.msgs]
            ordered = sorted(seqs) if sampler.type == "sync" else sorted(seqs, reverse=True)
            return "" if seqs == ordered or seqs == sorted(seqs) else f"seq_in_order: page seqs {seqs[:5]}..."
        return ""

    def _request(self, user: dict[str, Any], sampler: Sampler, req_id: int) -> bytes:
        bodies, Op, kind = self.bodies, self.Op, sampler.type
        target, flags = 0, 0
        if kind == "send_1to1":
            user["sent"] += 1
            op, body = Op.SEND, bodies.Send(cmid=_cmid(), content=CONTENT)
            target = user["peer_id"]
        elif kind == "reply_1to1" or (kind == "edit" and not user.get("last_1to1")):
            user["sent"] += 1
            reply_to = user["last_1to1"][0] if kind == "reply_1to1" and user.get("last_1to1") else 0
            op, body = Op.SEND, bodies.Send(cmid=_cmid(), content=CONTENT,
                                            reply_to=reply_to)
            target = user["peer_id"]
        elif kind == "edit":
            user["edits"] = user.get("edits", 0) + 1
            op, body = Op.EDIT, bodies.Edit(conv=user["peer_conv"], seq=user["last_1to1"][1],
                                            content=f"{CONTENT} (edit {user['edits']})")
        elif kind == "group_send":
            user["sent"] += 1
            op, body = Op.SEND, bodies.Send(cmid=_cmid(), content=CONTENT)
            target, flags = user["group_ids"][0], int(self.Flag.GROUP)
        elif kind == "sync":
            op, body = Op.SYNC, bodies.Sync(conv=user["peer_conv"], after_seq=0, limit=sampler.limit)
        elif kind == "history":
            op, body = Op.HISTORY, bodies.History(conv=user["peer_conv"], limit=sampler.limit)
        elif kind == "conversations":
            op, body = Op.CONVERSATIONS, bodies.Conversations(limit=sampler.limit)
        elif kind == "file_upload_grant":
            op, body = Op.FILE_UPLOAD, bodies.FileUpload(name="bench.jpg", size=100 * 1024, mime="image/jpeg",
                                                         conv=user["peer_conv"])
        elif kind == "profile_set":
            user["profiled"] = user.get("profiled", 0) + 1
            op, body = Op.PROFILE_SET, bodies.ProfileSet(bio=f"bench bio {user['profiled']}")
        elif kind == "react":  # toggles one emoji on the first message: every REACT changes it
            user["reacted"] = user.get("reacted", 0) + 1
            op, body = Op.REACT, bodies.React(conv=user["peer_conv"], seq=1, emoji="\U0001f44d",
                                              remove=user["reacted"] % 2 == 0)
        elif kind == "forward":
            user["sent"] += 1
            op, body = Op.FORWARD, bodies.Forward(conv=user["peer_conv"], seqs=[1],
                                                  cmid=_cmid())
            target, flags = user["group_ids"][0], int(self.Flag.GROUP)
        elif kind == "delete_for_me":  # the seeded messages, each in turn (again: nothing new to hide)
            user["deleted"] = user.get("deleted", 0) + 1
            op, body = Op.DELETE_FOR_ME, bodies.DeleteForMe(conv=user["peer_conv"],
                                                            seqs=[(user["deleted"] - 1) % SEEDED + 1])
        elif kind == "pin_message":  # pin a seeded message, unpin it the next time, then the next one
            turn = user.get("pinned", 0)
            user["pinned"] = turn + 1
            op = Op.PIN_MESSAGE if turn % 2 == 0 else Op.UNPIN_MESSAGE
            body = bodies.MessageRef(conv=user["peer_conv"], seq=(turn // 2) % SEEDED + 1)
        elif kind == "pins":
            op, body = Op.PINS, bodies.ConvRef(conv=user["peer_conv"])
        elif kind == "group_members":
            op, body = Op.GROUP_MEMBERS, bodies.GroupMembers(group=user["group_ids"][0], limit=sampler.limit)
        else:  # friends, friend_requests, groups
            op, body = Op[kind.upper()], bodies.ListPage(limit=sampler.limit)
        return self.encode_frame(int(op), req_id, target, bodies.encode(body), flags)

    async def sample(self, user: dict[str, Any], sampler: Sampler, record: Any, thread: str, group: str) -> None:
        conn = user["conn"]
        if conn is None or conn.is_closed:
            record(int(time.time() * 1000), 0.0, sampler, "Non HTTP response code: ConnectionError", "closed",
                   thread, False, "ack: connection closed", 0, 0, group, user["url"])
            await asyncio.sleep(0.1)  # a closed connection must not spin its lanes
            return
        req_id = conn.new_req()
        frame = self._request(user, sampler, req_id)
        t_wall = int(time.time() * 1000)
        t0 = time.perf_counter()
        reply = await self._timed(conn, frame, req_id, sampler)
        self._judge(reply, t_wall, t0, sampler, record, thread, group, user, len(frame))
        if sampler.type in _ONE_TO_ONE and not isinstance(reply, BaseException) and reply[0] == self.op_send_ack:
            ack = self.bodies.decode(reply[1], self.bodies.SendAck)  # what reply_1to1 and edit refer to
            user["last_1to1"] = (ack.msg_id, ack.seq)

    async def close_all(self, users: list[dict[str, Any]]) -> None:
        from .benchclient import close_all
        await close_all([u["conn"] for u in users if u.get("conn") is not None])


class _CentrifugoConn:
    """A Centrifugo client connection (JSON protocol, one command or reply per line)."""

    def __init__(self, counts: dict[str, int]) -> None:
        from picows import WSListener
        import msgspec
        outer = self
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_id = 0
        self.is_closed = False
        decode = msgspec.json.decode

        class Listener(WSListener):  # type: ignore[misc]
            def on_ws_connected(self, transport: Any) -> None:
                outer.transport = transport

            def on_ws_disconnected(self, transport: Any) -> None:
                outer.is_closed = True
                for future in outer.pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("connection closed"))

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                from picows import WSMsgType
                if frame.msg_type is WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()
                    return
                data = frame.get_payload_as_bytes()
                for line in data.split(b"\n"):
                    if not line:
                        continue
                    if line == b"{}":  # the server's ping: answer it
                        transport.send(WSMsgType.TEXT, b"{}")
                        continue
                    msg = decode(line)
                    reply_id = msg.get("id")
                    if reply_id:
                        future = outer.pending.pop(reply_id, None)
                        if future is not None and not future.done():
                            future.set_result(msg)
                    elif "push" in msg:
                        counts["pushes"] += 1
                        counts["push_bytes"] += len(line)

        self.listener = Listener()


class _Centrifugo:
    """The peer: Centrifugo's client protocol over picows. login = connect command with a
    JWT (and, for users that receive, a subscribe to their personal channel); send_1to1 =
    publish into the peer's personal channel, sampled until the publish reply."""

    def __init__(self, spec: dict[str, Any], counts: dict[str, int], pending: _Pending) -> None:
        import msgspec
        self.encode = msgspec.json.encode
        self.counts = counts
        self.pending = pending
        self.data = {"text": CONTENT}

    async def connect(self, user: dict[str, Any], timeout: float = 60.0) -> Any:
        from picows import ws_connect
        conn = _CentrifugoConn(self.counts)
        await ws_connect(lambda: conn.listener, user["url"], websocket_handshake_timeout=timeout,
                         local_addr=source_address(user["url"], user["index"]))
        return conn

    async def _command(self, conn: Any, body: dict[str, Any], timeout: float) -> tuple[dict[str, Any], int]:
        from picows import WSMsgType
        conn.next_id += 1
        body["id"] = conn.next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        conn.pending[conn.next_id] = future
        self.pending.add(future, time.monotonic() + timeout)
        raw = self.encode(body)
        conn.transport.send(WSMsgType.TEXT, raw)
        try:
            return await future, len(raw)
        finally:
            self.pending.discard(future)
            conn.pending.pop(body["id"], None)

    async def _login(self, user: dict[str, Any], timeout: float) -> tuple[dict[str, Any], int]:
        conn = user["conn"]
        reply, sent = await self._command(conn, {"connect": {"token": user["token"], "name": "bench"}}, timeout)
        if "error" in reply:
            return reply, sent
        sub, _ = await self._command(conn, {"subscribe": {"channel": user["channel"]}}, timeout)
        return (sub if "error" in sub else reply), sent

    async def login(self, user: dict[str, Any], timeout: float) -> None:
        reply, _ = await self._login(user, timeout)
        if "error" in reply:
            raise RuntimeError(f"{user['name']}: centrifugo refused: {reply['error']}")

    async def timed_login(self, user: dict[str, Any], sampler: Sampler, record: Any, thread: str, group: str) -> bool:
        t_wall = int(time.time() * 1000)
        t0 = time.perf_counter()
        try:
            user["conn"] = await asyncio.wait_for(self.connect(user, sampler.timeout), sampler.timeout)
            connect_ms = (time.perf_counter() - t0) * 1000
            reply, sent = await self._login(user, sampler.timeout)
        except Exception as exc:
            elapsed = (time.perf_counter() - t0) * 1000
            record(t_wall, elapsed, sampler, f"Non HTTP response code: {type(exc).__name__}", str(exc)[:200],
                   thread, False, f"ack: {exc}", 0, 0, group, user["url"], elapsed)
            return False
        return self._judge(reply, sent, t_wall, t0, sampler, record, thread, group, user, connect_ms)

    def _judge(self, reply: dict[str, Any], sent: int, t_wall: int, t0: float, sampler: Sampler, record: Any,
               thread: str, group: str, user: dict[str, Any], connect_ms: float = 0.0) -> bool:
        elapsed = (time.perf_counter() - t0) * 1000
        nbytes = len(self.encode(reply))
        if "error" in reply:
            error = reply["error"]
            ok = "no_error" not in sampler.assertions
            record(t_wall, elapsed, sampler, str(error.get("code", "")), str(error.get("message", "")), thread, ok,
                   "" if ok else f"no_error: {error}", nbytes, sent, group, user["url"], connect_ms)
            return ok
        record(t_wall, elapsed, sampler, "publish" if "publish" in reply else "connect", "OK", thread, True, "",
               nbytes, sent, group, user["url"], connect_ms)
        return True

    async def sample(self, user: dict[str, Any], sampler: Sampler, record: Any, thread: str, group: str) -> None:
        if sampler.type != "send_1to1":
            raise RuntimeError(f"the centrifugo peer runs only login and send_1to1, not {sampler.type}")
        t_wall = int(time.time() * 1000)
        t0 = time.perf_counter()
        try:
            reply, sent = await self._command(user["conn"], {"publish": {"channel": user["peer_channel"],
                                                                         "data": self.data}}, sampler.timeout)
        except (TimeoutError, ConnectionError) as exc:
            elapsed = (time.perf_counter() - t0) * 1000
            record(t_wall, elapsed, sampler, f"Non HTTP response code: {type(exc).__name__}", str(exc), thread,
                   False, f"ack: {exc}", 0, 0, group, user["url"])
            if isinstance(exc, ConnectionError):
                await asyncio.sleep(0.1)
            return
        self._judge(reply, sent, t_wall, t0, sampler, record, thread, group, user)

    async def close_all(self, users: list[dict[str, Any]]) -> None:
        for u in users:
            conn = u.get("conn")
            if conn is not None and not conn.is_closed:
                conn.transport.send_close()
                conn.transport.disconnect()
        deadline = time.monotonic() + 5
        while any(u.get("conn") is not None and not u["conn"].is_closed for u in users) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

