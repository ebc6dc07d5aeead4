"""What the admin commands print for people: times as dates, names beside ids, where the
sessions are, how to get the next page; ``--json`` is the admin API's answer as it came."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import ServeProcess

from edgeim.sdk import Client

IM = Path(sys.executable).with_name("im")
TOKEN = "output-admin-token"
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def im(node: ServeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(IM), *args], env={**os.environ, "IM_ADMIN_TOKEN": TOKEN, "IM_ADMIN_URL": node.http_url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def node(serve_factory) -> ServeProcess:
    return serve_factory(admin_token=TOKEN)


def local(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def test_user_list_dates_and_the_next_page(node: ServeProcess):
    for name in ("alice", "bob", "carol"):
        im(node, "user", "create", name, "--password", "secret-pw")
    users = json.loads(im(node, "user", "list", "--json").stdout)
    assert set(users) == {"users", "more"} and isinstance(users["users"][0]["created_at"], int)  # as it came

    first = im(node, "user", "list", "--limit", "2")
    header, *rows = first.stdout.splitlines()
    assert header.split() == ["ID", "USERNAME", "NICKNAME", "DISABLED", "DELETED", "CREATED_AT"]
    assert [row.split()[1] for row in rows] == ["alice", "bob"]
    assert rows[0].endswith(local(users["users"][0]["created_at"]))
    assert first.stderr == "more: im user list --after 2 --limit 2\n"
    last = im(node, "user", "list", "--after", "2", "--limit", "2")
    assert [row.split()[1] for row in last.stdout.splitlines()[1:]] == ["carol"]
    assert last.stderr == ""  # no more pages
    shown = im(node, "user", "show", "alice").stdout
    assert re.search(rf"^created_at  {DATE}$", shown, re.M) and "sessions    none" in shown


async def test_groups_name_their_owner_and_members(node: ServeProcess):
    async with Client(node.url) as alice, Client(node.url) as bob:
        im(node, "user", "create", "alice", "--password", "secret-pw")
        im(node, "user", "create", "bob", "--password", "secret-pw")
        await alice.login("alice", "secret-pw", "web")
        await bob.login("bob", "secret-pw", "ios")
        group = (await alice.group_create("ops-room", [bob.user_id])).group

        listed = im(node, "group", "list").stdout.splitlines()
        assert listed[0].split() == ["ID", "NAME", "OWNER", "MEMBERS", "JOIN_MODE", "CREATED_AT"]
        assert re.fullmatch(rf"{group}\s+ops-room\s+alice \({alice.user_id}\)\s+2\s+\w+\s+{DATE}", listed[1])
        as_json = json.loads(im(node, "group", "list", "--json").stdout)
        assert as_json["groups"][0]["owner"] == alice.user_id and "owner_name" not in as_json["groups"][0]

        shown = im(node, "group", "show", str(group)).stdout
        assert re.search(rf"^owner\s+alice \({alice.user_id}\)$", shown, re.M)
        members = shown.split("\n\n", 1)[1].splitlines()
        assert members[0].split() == ["USER", "USERNAME", "ROLE", "JOINED_AT", "MUTED_UNTIL"]
        assert [m.split()[:3] for m in members[1:]] == [[str(alice.user_id), "alice", "owner"],
                                                        [str(bob.user_id), "bob", "member"]]
        member = json.loads(im(node, "group", "show", str(group), "--json").stdout)["member_list"][1]
        assert set(member) == {"user", "role", "muted_until", "joined_at"} and member["user"] == bob.user_id

        node_id = json.loads(im(node, "stats", "--json").stdout)["node"]
        assert f"sessions    ios on {node_id}" in im(node, "user", "show", "bob").stdout
        stats = im(node, "stats").stdout
        assert re.search(r"^uptime\s+\d\d:\d\d:\d\d$", stats, re.M)
        assert re.search(r"^backends\s+store up, routes up, bus up$", stats, re.M)
        kicked = im(node, "user", "kick", "bob").stdout
        assert f"kicked    ios on {node_id}" in kicked
