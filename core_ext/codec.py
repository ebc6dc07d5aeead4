"""The frame codec: the compiled ``_codec`` unless ``EDGEIM_NO_EXT=1`` (or it is not
built), then its pure-Python twin ``codec_py``. Both have the same API and errors."""
from __future__ import annotations

from ._select import select

__all__ = ["encode_frame", "decode_frame", "decode_request", "IMPLEMENTATION"]

_impl, IMPLEMENTATION = select("._codec", ".codec_py")
encode_frame = _impl.encode_frame
decode_frame = _impl.decode_frame
decode_request = _impl.decode_request
