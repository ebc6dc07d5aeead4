"""The frame codec: the compiled ``_codec`` unless ``EDGEIM_NO_EXT=1`` (or it is not
built), then its pure-Python twin ``codec_py``. Both have the same API and errors."""
from __future__ import annotations

import os

__all__ = ["encode_frame", "decode_frame", "decode_request", "IMPLEMENTATION"]

if os.environ.get("EDGEIM_NO_EXT", "") not in ("", "0"):
    from .codec_py import decode_frame, decode_request, encode_frame

    IMPLEMENTATION = "python"
else:
    try:
        from ._codec import decode_frame, decode_request, encode_frame

        IMPLEMENTATION = "cython"
    except ImportError:  # source checkout without a build: still runs, slower
        from .codec_py import decode_frame, decode_request, encode_frame

        IMPLEMENTATION = "python"
