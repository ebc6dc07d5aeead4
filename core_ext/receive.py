"""The receiving half of a connection: the compiled ``_receive`` unless ``EDGEIM_NO_EXT=1``
(or it is not built), then its pure-Python twin ``receive_py``. Both have the same API."""
from __future__ import annotations

from ._select import select

__all__ = ["Receiver", "ANONYMOUS", "LOGGING_IN", "AUTHENTICATED", "MAX_IN_FLIGHT", "OPEN_OPS", "AUTH_OPS",
           "IMPLEMENTATION"]

_impl, IMPLEMENTATION = select("._receive", ".receive_py")
Receiver = _impl.Receiver
ANONYMOUS, LOGGING_IN, AUTHENTICATED = _impl.ANONYMOUS, _impl.LOGGING_IN, _impl.AUTHENTICATED
MAX_IN_FLIGHT = _impl.MAX_IN_FLIGHT
OPEN_OPS, AUTH_OPS = _impl.OPEN_OPS, _impl.AUTH_OPS
