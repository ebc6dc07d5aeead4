"""The SQLite writer's runs of new messages: the compiled ``_appends`` unless
``EDGEIM_NO_EXT=1`` (or it is not built), then its pure-Python twin ``appends_py``. Both
have the same API."""
from __future__ import annotations

from ._select import select

__all__ = ["unknown", "lay_out", "inserted", "IMPLEMENTATION"]

_impl, IMPLEMENTATION = select("._appends", ".appends_py")
unknown = _impl.unknown
lay_out = _impl.lay_out
inserted = _impl.inserted
