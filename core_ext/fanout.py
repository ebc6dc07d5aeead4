"""The fanout: the compiled ``_fanout`` unless ``EDGEIM_NO_EXT=1`` (or it is not
built), then its pure-Python twin ``fanout_py``. Both have the same API and errors."""
from __future__ import annotations

import os

__all__ = ["send_all", "IMPLEMENTATION"]

if os.environ.get("EDGEIM_NO_EXT", "") not in ("", "0"):
    from .fanout_py import send_all

    IMPLEMENTATION = "python"
else:
    try:
        from ._fanout import send_all

        IMPLEMENTATION = "cython"
    except ImportError:  # source checkout without a build: still runs, slower
        from .fanout_py import send_all

        IMPLEMENTATION = "python"
