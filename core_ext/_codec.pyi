# Types of the compiled codec (_codec.pyx); same API as codec_py.py.
__all__ = ["encode_frame", "decode_frame", "decode_request"]

def encode_frame(op: int, req_id: int, target: int, body: bytes | bytearray | memoryview, flags: int = 0) -> bytes: ...
def decode_frame(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int, memoryview]:
    """``(op, flags, req_id, target, body)``; ``body`` borrows ``data``."""
def decode_request(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int, memoryview]:
    """``decode_frame`` that also refuses non-request ops (UNKNOWN_OP)."""
