"""Token buckets: the compiled ``_buckets`` unless ``EDGEIM_NO_EXT=1`` (or it is not
built), then its pure-Python twin ``buckets_py``. Both have the same API."""
from __future__ import annotations

from ._select import select

__all__ = ["Bucket", "take_all", "give_back", "IMPLEMENTATION"]

_impl, IMPLEMENTATION = select("._buckets", ".buckets_py")
Bucket = _impl.Bucket
take_all = _impl.take_all
give_back = _impl.give_back
