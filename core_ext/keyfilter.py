"""The store's retry keys (their hash, the filter of those stored, a batch's keys taken
into memory, the sort of a pass's rows): the compiled ``_keyfilter`` unless
``EDGEIM_NO_EXT=1`` (or it is not built), then its pure-Python twin ``keyfilter_py``.
Both have the same API."""
from __future__ import annotations

from ._select import select

__all__ = ["KeyFilter", "key_hash", "key_rows", "hold_keys", "IMPLEMENTATION"]

_impl, IMPLEMENTATION = select("._keyfilter", ".keyfilter_py")
KeyFilter = _impl.KeyFilter
key_hash = _impl.key_hash
key_rows = _impl.key_rows
hold_keys = _impl.hold_keys
