# Types of the compiled fanout writer (_fanout.pyx); same API as fanout_py.py.
from picows import WSTransport

__all__ = ["write_frames"]

def write_frames(transport: WSTransport, frames: list[bytes]) -> int: ...
