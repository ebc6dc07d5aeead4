"""A damaged SQLite store is refused at open with a message an operator can act on, and a
store whose writes fail says so (``healthy``) until a commit succeeds again."""
from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from edgeim.backends.protocols import ConvId, NewMessage, StoreDamaged, StoreUnavailable, UserId
from edgeim.backends.sqlite import SqliteStore


def message(n: int) -> NewMessage:
    return NewMessage(conv=ConvId("p1_2"), sender=UserId(1), to=2, cmid=f"c{n}", type=1, content="x" * 200,
                      msg_id=n + 1, ts=n)


async def filled(path: Path, count: int = 300) -> Path:
    """A store with ``count`` messages and a copy of its files taken before the close, so
    the copy's WAL still holds them (close would checkpoint them into the database)."""
    store = SqliteStore(path)
    await store.open()
    for n in range(count):
        await store.append(message(n))
    copy = path.with_name("copy.db")
    shutil.copy(path, copy)
    shutil.copy(f"{path}-wal", f"{copy}-wal")
    await store.close()
    return copy


async def test_an_intact_wal_opens_with_every_message(tmp_path):
    copy = await filled(tmp_path / "im.db")
    store = SqliteStore(copy)
    await store.open()
    try:
        assert len(await store.messages_after(ConvId("p1_2"), 0, 1000)) == 300
    finally:
        await store.close()


async def test_a_flipped_byte_in_the_wal_is_refused_not_replayed_in_part(tmp_path):
    copy = await filled(tmp_path / "im.db")
    wal = Path(f"{copy}-wal")
    data = bytearray(wal.read_bytes())
    page_size = int.from_bytes(data[8:12], "big")
    data[32 + (24 + page_size) * 3 + 24 + 100] ^= 0xFF  # inside the page of the 4th frame
    wal.write_bytes(data)
    store = SqliteStore(copy)
    with pytest.raises(StoreDamaged, match="damaged at frame 4"):
        await store.open()
    assert wal.read_bytes() == data  # left as it was found, for the operator


async def test_a_torn_last_frame_is_a_crash_not_damage(tmp_path):
    copy = await filled(tmp_path / "im.db")
    wal = Path(f"{copy}-wal")
    data = wal.read_bytes()
    wal.write_bytes(data[:-100])  # the last frame was being written when the power went
    store = SqliteStore(copy)
    await store.open()
    try:
        assert 0 < len(await store.messages_after(ConvId("p1_2"), 0, 1000)) <= 300
    finally:
        await store.close()


@pytest.mark.parametrize("damage", ["garbage-page", "truncated", "not-a-database"])
async def test_a_damaged_database_file_is_refused(tmp_path, damage):
    path = tmp_path / "im.db"
    store = SqliteStore(path)
    await store.open()
    for n in range(300):
        await store.append(message(n))
    await store.close()  # checkpointed: everything is in the database file now
    data = bytearray(path.read_bytes())
    if damage == "garbage-page":
        page = int.from_bytes(data[16:18], "big")
        data[page * 3:page * 5] = os.urandom(page * 2)
    elif damage == "truncated":
        data = data[: len(data) // 3]
    else:
        data = bytearray(b"this is not a database" * 100)
    path.write_bytes(data)
    with pytest.raises(StoreDamaged, match="backup"):
        await SqliteStore(path).open()


async def test_a_read_only_data_dir_is_unavailable_not_damaged(tmp_path):
    if os.geteuid() == 0:
        # file modes do not stop root (CI runs as root); /proc refuses to create the file,
        # which is the same failure as far as the store can tell
        path = Path("/proc/edgeim-cannot-write-here/im.db")
    else:
        data_dir = tmp_path / "ro"
        data_dir.mkdir()
        data_dir.chmod(0o500)
        path = data_dir / "im.db"
    with pytest.raises(StoreUnavailable, match="cannot open"):
        await SqliteStore(path).open()


async def test_healthy_turns_false_while_commits_fail_and_back_after(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path / "im.db")
    await store.open()
    try:
        await store.append(message(0))
        assert store.healthy
        real = store._insert_run

        def disk_full(*args, **kwargs):
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(store, "_insert_run", disk_full)
        with pytest.raises(StoreUnavailable, match="disk is full"):
            await store.append(message(1))
        assert not store.healthy
        monkeypatch.setattr(store, "_insert_run", real)
        await store.append(message(2))
        assert store.healthy
    finally:
        await store.close()
