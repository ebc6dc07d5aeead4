"""The conversation list kept from what changed (``ConvIndex``) against the list built from
scratch, after random changes of every kind a node makes: new heads (the user's and
others'), the user's own state, leaving and joining, group renames, groups forgotten and
loaded again, changes it is not told the conversation of, and more changes than the
node's log remembers, and the user read back from the store."""
from __future__ import annotations

import asyncio
import random
from typing import Any

import msgspec
import pytest

from edgeim.backends.protocols import (
    ConvId, GroupId, GroupRecord, GroupRecords, StoredMessage, UserConv, UserId, UserRecords,
)
from edgeim.core_ext import bodies
from edgeim.services import state as state_module
from edgeim.services.conversations import Conversations, parse_conv
from edgeim.services.state import GroupState, State, UserState

ME = UserId(1)


class StoreOfMemory:
    """What ``State.reload_user`` reads: the user as memory holds them, as new objects."""

    state: State

    async def load_user(self, user_id: UserId) -> UserRecords:
        user = self.state.users[user_id]
        convs = [msgspec.structs.replace(uc) for uc in user.convs.values()]
        return UserRecords([], [], [], [], [], convs, [])


def from_scratch(state: State, user: UserState) -> list[tuple[str, int, int, str, bool]]:
    """(conv, last_seq, unread, name, pinned) of every listed conversation, in list order."""
    rows = []
    for conv, uc in user.convs.items():
        head = state.heads.get(conv)
        last_seq = head.seq if head else 0
        if last_seq < uc.hidden_seq:
            continue
        kind, a, _ = parse_conv(conv)
        if kind == "group":
            group = state.groups.get(GroupId(a))
            if group is None:
                continue
            name, last_ts = group.record.name, head.ts if head else group.record.created_at
        elif head is None:
            continue
        else:
            name, last_ts = "", head.ts
        unread = max(0, last_seq - max(uc.read_seq, uc.joined_seq))
        rows.append(((0 if uc.pinned else 1, -last_ts, conv), (conv, last_seq, unread, name, uc.pinned)))
    return [row for _, row in sorted(rows)]


def listed(convs: Conversations, user: UserState, limit: int) -> list[tuple[str, int, int, str, bool]]:
    got, cursor = [], ""
    while True:
        page = bodies.decode(convs.page(user, cursor, limit), bodies.ConversationList)
        got += [(c.conv, c.last_seq, c.unread, c.name, c.pinned) for c in page.convs]
        if not page.has_more:
            return got
        cursor = page.next_cursor


@pytest.mark.parametrize("seed", range(4))
def test_the_kept_list_is_the_list_built_from_scratch(monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(state_module, "_LIST_LOG", 16)  # so that the log is overrun now and then
    rng = random.Random(seed)
    store = StoreOfMemory()
    state = store.state = State(store)  # type: ignore[arg-type]
    convs = Conversations(None, state, lambda *a: None, lambda **k: None)  # type: ignore[arg-type]
    user = state.users[ME] = UserState(ME)
    groups = [GroupId(g) for g in range(1, 9)]
    privates = [ConvId(f"p1_{peer}") for peer in range(2, 12)]
    records = {g: GroupRecord(g, f"group {g}", "", "", ME, "open", False, 100, 1000 + g) for g in groups}
    for g in groups:
        state.groups[g] = GroupState(GroupRecords(records[g], [], []))
        user.convs[ConvId(f"g{g}")] = UserConv(ConvId(f"g{g}"))
    clock, ids = [2000], [0]

    def message(conv: ConvId, sender: int) -> StoredMessage:
        head = state.heads.get(conv)
        clock[0] += rng.choice([0, 1, 5])  # equal times too: ties go by conv
        ids[0] += 1
        to = int(conv[1:]) if conv[0] == "g" else (ME if sender != ME else int(conv.split("_")[1]))
        return StoredMessage(ids[0], conv, (head.seq if head else 0) + 1, UserId(sender), to, f"c{ids[0]}", 1,
                             f"text {ids[0]}", clock[0])

    def step() -> None:
        conv = rng.choice([ConvId(f"g{g}") for g in groups] + privates)
        what = rng.randrange(9)
        if what <= 2:  # a message, by the user or by someone else
            convs.committed(message(conv, ME if what == 0 else 99))
        elif what == 3 and conv in user.convs:  # the user's own state (pin, hide, read)
            uc = user.convs[conv]
            head = state.heads.get(conv)
            user.convs[conv] = msgspec.structs.replace(
                uc, pinned=rng.random() < 0.5, read_seq=head.seq if head and rng.random() < 0.5 else uc.read_seq,
                hidden_seq=(head.seq if head else 0) + 1 if rng.random() < 0.2 else 0)
            user.changed(conv) if rng.random() < 0.7 else user.changed()  # told which, or not
        elif what == 4 and conv[0] == "g":  # leave, or join again
            if conv in user.convs:
                del user.convs[conv]
            else:
                user.convs[conv] = UserConv(conv)
            user.changed(conv)
        elif what == 5:  # a group renamed
            group = state.groups.get(GroupId(int(conv[1:]))) if conv[0] == "g" else None
            if group is not None:
                group.record = msgspec.structs.replace(group.record, name=f"renamed {rng.randrange(100)}")
                state.group_changed(group)
        elif what == 6 and conv[0] == "g":  # a group forgotten, or loaded again
            g = GroupId(int(conv[1:]))
            if g in state.groups:
                state.forget_group(g)
            else:
                state.groups[g] = GroupState(GroupRecords(records[g], [], []))
                state._group_listed(g)  # what the loader does when it stores one
        elif what == 8 and rng.random() < 0.3:  # read back from the store: new objects, equal values
            asyncio.run(state.reload_user(ME))
        elif what == 7:  # a burst elsewhere on the node, past the log
            for _ in range(rng.randrange(30)):
                state.put_head(message(ConvId(f"g{rng.randrange(100, 200)}"), 99))
        else:  # a change of the user that is not about their conversations
            user.changed(convs=False)

    for _ in range(300):
        step()
        user = state.users[ME]
        if rng.random() < 0.5:
            assert listed(convs, user, rng.choice([1, 3, 500])) == from_scratch(state, user)
    assert listed(convs, user, 500) == from_scratch(state, user)
