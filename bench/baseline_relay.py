"""Baseline server of bench/group_fanout.py: picows on uvloop, like the node, forwarding each
binary frame it receives to every other connection (a group whose members are all the
connections), and answering the sender with an ack. No store, no routing table, no
batching: what fanning a frame out over WebSocket costs on this machine.

    python bench/baseline_relay.py [--host 127.0.0.1] [--port 0] [--push-bytes N] [--ack-bytes N]

The forwarded copy is the received frame with its op byte set to MSG_PUSH (0x40) and its
req_id zeroed (a push), zero-padded or cut to ``--push-bytes`` when given (the size of the
node's MSG_PUSH); the ack is the received frame, or its 20-byte header padded to
``--ack-bytes`` (the node's SEND_ACK). Its first stdout line is ``baseline relay listening
on ws://HOST:PORT/ws``, like ``im serve``. SIGINT or SIGTERM stops it.

With ``--route`` (the ceiling of ``im bench``, bench/runner.py) it routes like the node,
still without decoding a body: a LOGIN frame (op 0x03) registers its connection under the
frame's ``target`` and in the groups whose ids its body lists (little-endian u64s), and is
echoed; a SEND (op 0x10) goes to the connection registered under ``target`` (with flag
GROUP: to every other member of group ``target``) as a push, plus the ack to the sender;
any other frame is echoed. ``--reply-size OP=BYTES`` sizes the echo or ack of op OP like
the node's reply (header + zeros), as bench/baseline_echo.py does.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import signal

import uvloop
from picows import (WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, WSUpgradeResponse,
                    WSUpgradeResponseWithListener, ws_create_server)

from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION

_SUBPROTOCOL = f"{SUBPROTOCOL_PREFIX}{VERSION}"
_MSG_PUSH = 0x40
_members: list[WSTransport] = []
_sizes = {"push": 0, "ack": 0}


class Relay(WSListener):
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        _members.append(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        _members.remove(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.BINARY:
            payload = frame.get_payload_as_bytes()
            push = bytearray(payload[:20] if _sizes["push"] else payload)
            if len(push) >= 8:
                push[1] = _MSG_PUSH
                push[4:8] = b"\0\0\0\0"
            if _sizes["push"]:
                push += bytes(max(0, _sizes["push"] - len(push)))
            out = bytes(push)
            for member in _members:
                if member is not transport:
                    member.send(WSMsgType.BINARY, out)
            transport.send(WSMsgType.BINARY, payload[:20] + bytes(max(0, _sizes["ack"] - 20)) if _sizes["ack"] else payload)
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


# -- --route: the ceiling of `im bench` ------------------------------------------------------------

_OP_LOGIN, _OP_SEND, _FLAG_GROUP = 0x03, 0x10, 0x0002
_users: dict[int, WSTransport] = {}
_groups: dict[int, list[WSTransport]] = {}
_reply_padding: dict[int, bytes] = {}


class Router(WSListener):
    """Routes by the header like the node, without a store, a codec or a session."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.user = 0
        self.groups: list[int] = []

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if _users.get(self.user) is transport:
            del _users[self.user]
        for group in self.groups:
            members = _groups.get(group)
            if members and transport in members:
                members.remove(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not WSMsgType.BINARY:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        payload = frame.get_payload_as_bytes()
        if len(payload) < 20:
            transport.send(WSMsgType.BINARY, payload)
            return
        op = payload[1]
        if op == _OP_LOGIN:
            self.user = int.from_bytes(payload[8:16], "little")
            _users[self.user] = transport
            body = payload[20:]
            self.groups = [int.from_bytes(body[i:i + 8], "little") for i in range(0, len(body) - 7, 8)]
            for group in self.groups:
                _groups.setdefault(group, []).append(transport)
        elif op == _OP_SEND:
            push = bytearray(payload[:20] if _sizes["push"] else payload)
            push[1] = _MSG_PUSH
            push[4:8] = b"\0\0\0\0"
            if _sizes["push"]:
                push += bytes(max(0, _sizes["push"] - len(push)))
            out = bytes(push)
            target = int.from_bytes(payload[8:16], "little")
            if payload[2] & _FLAG_GROUP:
                for member in _groups.get(target, ()):
                    if member is not transport:
                        member.send(WSMsgType.BINARY, out)
            else:
                receiver = _users.get(target)
                if receiver is not None:
                    receiver.send(WSMsgType.BINARY, out)
        padding = _reply_padding.get(op)
        transport.send(WSMsgType.BINARY, payload if padding is None else payload[:20] + padding)


def route(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
    offered = request.headers.get("Sec-WebSocket-Protocol") or ""
    headers = {"Sec-WebSocket-Protocol": _SUBPROTOCOL} if _SUBPROTOCOL in offered else None
    listener = Router() if _sizes.get("route") else Relay()
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(headers), listener)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await ws_create_server(route, host, port, max_frame_size=MAX_FRAME_SIZE)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"baseline relay listening on ws://{bound_host}:{bound_port}/ws", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--push-bytes", type=int, default=0, help="size of each forwarded frame (default: as received)")
    parser.add_argument("--ack-bytes", type=int, default=0, help="size of the ack to the sender (default: as received)")
    parser.add_argument("--route", action="store_true", help="route by target like the node (see above)")
    parser.add_argument("--reply-size", action="append", default=[], metavar="OP=BYTES",
                        help="with --route: answer frames of op OP with BYTES bytes (header + zeros); repeatable")
    args = parser.parse_args()
    _sizes["push"], _sizes["ack"], _sizes["route"] = args.push_bytes, args.ack_bytes, int(args.route)
    for item in args.reply_size:
        op, _, size = item.partition("=")
        if int(size) < 20:
            parser.error(f"--reply-size {item}: at least 20 bytes (the header)")
        _reply_padding[int(op, 0)] = bytes(int(size) - 20)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
