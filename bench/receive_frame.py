"""A connection's receiving half alone: nanoseconds from picows's frame to the SEND handler.

    python bench/receive_frame.py [--frames 200000] [--rounds 5]

Both receivers in one process, alternating, on the same frame: the pure-Python twin
(core_ext/receive_py.py, the code of ``Session.on_ws_frame`` before it was compiled) and
the compiled ``_receive``. Each round times ``--frames`` calls of ``on_ws_frame`` with one
SEND frame (a 64-character text): the header, the frame budget, the metrics count, the
body's decoder, the checks and a handler that answers at once. The transport is picows's,
over a real asyncio transport on a socket pair. Prints each round and the medians.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import statistics
import time

from picows import WSMsgType, WSTransport
from picows.picows import _make_test_ws_frame

from edgeim.core_ext import _buckets, _receive, bodies, receive_py
from edgeim.core_ext.codec import encode_frame
from edgeim.core_ext.protocol import Op


def receiver(impl, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport):
    class Receiver(impl.Receiver):  # the handler answers at once: no hook is called
        __slots__ = ()

    r = Receiver()
    r.loop = loop
    r.transport = WSTransport(False, transport, logging.getLogger("bench"), loop)
    r._handlers = {Op.SEND: lambda *request: None}
    r._spawn = None
    r._frames = _buckets.Bucket(1e12, 1e12, loop.time())
    r.frames_in = [0] * 256
    r.state = impl.AUTHENTICATED
    r.in_flight = 0
    r._auth_busy = False
    r.last_active = 0.0
    return r


def timed(r, frame, n: int) -> float:
    on_ws_frame, transport = r.on_ws_frame, r.transport
    began = time.perf_counter()
    for _ in range(n):
        on_ws_frame(transport, frame)
    return (time.perf_counter() - began) / n * 1e9


async def run(frames: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    body = bodies.encode(bodies.Send(cmid="c-1", content="x" * 64))
    frame = _make_test_ws_frame(WSMsgType.BINARY, encode_frame(Op.SEND, 1, 2, body), True, False)
    impls = {"python": receive_py, "cython": _receive}
    receivers = {name: receiver(impl, loop, transport) for name, impl in impls.items()}
    ns: dict[str, list[float]] = {name: [] for name in impls}
    for i in range(rounds):
        for name, r in receivers.items():
            ns[name].append(timed(r, frame, frames))
        print(f"round {i + 1}: " + ", ".join(f"{name} {values[-1]:.0f} ns" for name, values in ns.items()))
    medians = {name: statistics.median(values) for name, values in ns.items()}
    print("median: " + ", ".join(f"{name} {value:.0f} ns" for name, value in medians.items())
          + f"; compiled/twin {medians['cython'] / medians['python']:.2f}")
    assert all(sum(r.frames_in) == frames * rounds for r in receivers.values())  # every frame was taken in
    transport.close()
    theirs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(run(args.frames, args.rounds))


if __name__ == "__main__":
    main()
