# Types of the compiled receiver (_receive.pyx); same API as receive_py.py.
from typing import Any

from picows import WSFrame, WSListener, WSTransport

__all__ = ["Receiver", "ANONYMOUS", "LOGGING_IN", "AUTHENTICATED", "MAX_IN_FLIGHT", "OPEN_OPS", "AUTH_OPS"]

ANONYMOUS: int
LOGGING_IN: int
AUTHENTICATED: int
MAX_IN_FLIGHT: int
OPEN_OPS: frozenset[int]
AUTH_OPS: frozenset[int]

class Receiver(WSListener):
    loop: Any
    transport: WSTransport
    _handlers: Any
    _spawn: Any
    _frames: Any
    frames_in: list[int] | None
    state: int
    in_flight: int
    _auth_busy: bool
    last_active: float
    peer: Any
    frames_out: list[int] | None
    def send_frame(self, frame: bytes) -> None: ...
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None: ...
