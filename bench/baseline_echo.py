"""Baseline server of bench/send_throughput.py: picows on uvloop, like the node, answering
every binary frame at once with a reply of the same size (the frame itself). No store, no
routing, no logic: what one WebSocket round trip costs on this machine.

    python bench/baseline_echo.py [--host 127.0.0.1] [--port 0]

Its first stdout line is ``baseline echo listening on ws://HOST:PORT/ws``, like ``im serve``.
SIGINT or SIGTERM stops it.
"""
from __future__ import annotations

import argparse
import asyncio
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


def route(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
    # answer the subprotocol like the node does, so the client's handshake is the same; no
    # edgeim import beyond the constants, to keep this process's RSS that of bare picows
    offered = request.headers.get("Sec-WebSocket-Protocol") or ""
    headers = {"Sec-WebSocket-Protocol": _SUBPROTOCOL} if _SUBPROTOCOL in offered else None
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(headers), Echo())


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = await ws_create_server(route, host, port, max_frame_size=MAX_FRAME_SIZE)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"baseline echo listening on ws://{bound_host}:{bound_port}/ws", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
