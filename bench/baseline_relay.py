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


def route(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
    offered = request.headers.get("Sec-WebSocket-Protocol") or ""
    headers = {"Sec-WebSocket-Protocol": _SUBPROTOCOL} if _SUBPROTOCOL in offered else None
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(headers), Relay())


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
    args = parser.parse_args()
    _sizes["push"], _sizes["ack"] = args.push_bytes, args.ack_bytes
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
