"""Baseline server of bench/send_throughput.py: picows on uvloop, like the node, answering
every binary frame at once with a reply of the same size (the frame itself). No store, no
routing, no logic: what one WebSocket round trip costs on this machine.

    python bench/baseline_echo.py [--host 127.0.0.1] [--port 0] [--reply-size OP=BYTES ...]
        [--read-buffer BYTES] [--no-aiofastnet]

``--read-buffer`` and ``--no-aiofastnet`` set picows's per-connection read buffer size and
transport like the node's (bench/memory.py passes the node's settings); by default
picows's defaults.

With ``--reply-size OP=BYTES`` (OP as a number, e.g. 0x13 or 19) a frame whose op byte is
OP is answered with a reply of BYTES bytes (its own 20-byte header, then zeros) instead of
itself: bench/lists.py gives it the size of the node's reply to each list request, so the
echo moves the same bytes per round trip as the node.

Its first stdout line is ``baseline echo listening on ws://HOST:PORT/ws``, like ``im serve``.
SIGINT or SIGTERM stops it.
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


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.BINARY:
            transport.send(WSMsgType.BINARY, frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class SizedEcho(WSListener):
    """Answers a frame whose op has a size in ``_REPLY_PADDING`` with its header and that
    much zero padding; any other frame with itself."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.BINARY:
            payload = frame.get_payload_as_bytes()
            padding = _REPLY_PADDING.get(payload[1]) if len(payload) >= 20 else None
            transport.send(WSMsgType.BINARY, payload if padding is None else payload[:20] + padding)
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


_REPLY_PADDING: dict[int, bytes] = {}


def route(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
    # answer the subprotocol like the node does, so the client's handshake is the same; no
    # edgeim import beyond the constants, to keep this process's RSS that of bare picows
    offered = request.headers.get("Sec-WebSocket-Protocol") or ""
    headers = {"Sec-WebSocket-Protocol": _SUBPROTOCOL} if _SUBPROTOCOL in offered else None
    listener = SizedEcho() if _REPLY_PADDING else Echo()
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(headers), listener)


async def serve(host: str, port: int, options: dict[str, object]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await ws_create_server(route, host, port, max_frame_size=MAX_FRAME_SIZE, **options)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"baseline echo listening on ws://{bound_host}:{bound_port}/ws", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply-size", action="append", default=[], metavar="OP=BYTES",
                        help="answer frames of op OP with BYTES bytes (header + zeros); repeatable")
    parser.add_argument("--read-buffer", type=int, default=0, help="picows read_buffer_init_size (default: picows's)")
    parser.add_argument("--no-aiofastnet", action="store_true", help="uvloop's transports even if aiofastnet is installed")
    args = parser.parse_args()
    for item in args.reply_size:
        op, _, size = item.partition("=")
        if int(size) < 20:
            parser.error(f"--reply-size {item}: at least 20 bytes (the header)")
        _REPLY_PADDING[int(op, 0)] = bytes(int(size) - 20)
    # as many connections as the node may hold (bench/memory.py opens 10,000)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    options: dict[str, object] = {}
    if args.read_buffer:
        options["read_buffer_init_size"] = args.read_buffer
    if args.no_aiofastnet:
        options["use_aiofastnet"] = False
    uvloop.run(serve(args.host, args.port, options))


if __name__ == "__main__":
    main()
