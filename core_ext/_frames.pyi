# Types of the compiled frames (_frames.pyx); same API as frames_py.py.
from typing import Any

__all__ = ["ack_frame", "message_frame", "settle_sends"]

def ack_frame(req_id: int, m: Any) -> bytes:
    """The SEND_ACK of request ``req_id`` for the stored message ``m``."""
def message_frame(op: int, m: Any) -> bytes:
    """A push of ``m``: target its receiver or group, flag GROUP for a group's conversation."""
def settle_sends(outcomes: list[tuple[Any, Any, Any]], committed: Any, push: Any, observe: Any) -> int:
    """The after-commit loop of a batch of messages; returns how many SENDs were acked."""
