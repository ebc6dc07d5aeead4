# Types of the compiled fanout (_fanout.pyx); same API as fanout_py.py.
from collections.abc import Iterable

from picows import WSTransport

__all__ = ["send_all"]

def send_all(transports: Iterable[WSTransport], frame: bytes) -> int: ...
