"""List pages that fit one frame: the one way every list reply (conversations, friends,
requests, blocks, groups, members, join requests) is cut. A page ends at its ``limit`` or
at the item that would take its body past the frame, whichever comes first; either way
``has_more`` tells the client to ask on from the last item it got (docs/protocol.md: a page
may hold fewer than ``limit`` entries). Items are encoded once, and the reply carries
those bytes (``msgspec.Raw``)."""
from __future__ import annotations

from typing import Iterable

import msgspec

from ..core_ext.protocol import MAX_BODY_SIZE

__all__ = ["ITEMS_BUDGET", "fit"]

#: bytes of a list reply body its items may take: the rest is room for the reply's own
#: keys (a cursor of up to 128 characters, a group id, has_more) and the array's header
ITEMS_BUDGET = MAX_BODY_SIZE - 1024


def fit(items: Iterable[bytes], limit: int) -> tuple[list[msgspec.Raw], bool]:
    """The first encoded ``items`` up to ``limit`` of them and ``ITEMS_BUDGET`` bytes, and
    whether any item is left after them. The first item is always taken (every list item
    is far smaller than the budget), so paging always moves on. ``items`` is read lazily:
    at most one past the page."""
    page: list[msgspec.Raw] = []
    total = 0
    for item in items:
        total += len(item)
        if len(page) == limit or (total > ITEMS_BUDGET and page):
            return page, True
        page.append(msgspec.Raw(item))
    return page, False
