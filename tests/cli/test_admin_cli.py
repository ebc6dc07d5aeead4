"""The operator's commands against real nodes: ``im user``, ``im group``, ``im stats``,
``im cluster`` through the admin API, run as processes (the installed ``im``) and through
typer's runner; ``im migrate``; drain by command and by SIGTERM; SIGHUP reload."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from harness import ServeProcess, new_user, next_event
from typer.testing import CliRunner

from edgeim.cli.main import app
from edgeim.core_ext.protocol import CloseCode, ErrorCode, Op
from edgeim.sdk import Client, ServerError

IM = Path(sys.executable).with_name("im")
TOKEN = "admin-" + uuid.uuid4().hex
runner = CliRunner()


def im(node: ServeProcess | None, *args: str, token: str = TOKEN, url: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IM_ADMIN_TOKEN": token, "IM_ADMIN_URL": url or (node.http_url if node else "")}
    return subprocess.run([str(IM), *args], env=env, capture_output=True, text=True, timeout=60)


def im_json(node: ServeProcess, *args: str) -> dict:
    done = im(node, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def node(serve_factory) -> ServeProcess:
    return serve_factory(admin_token=TOKEN)


async def test_user_commands_create_list_show_kick_disable(node: ServeProcess):
    created = im_json(node, "user", "create", "alice", "--password", "secret-pw", "--nickname", "Alice")
    assert created["username"] == "alice" and created["disabled"] is False
    taken = im(node, "user", "create", "alice", "--password", "secret-pw")
    assert taken.returncode == 1 and "taken" in taken.stderr
    users = im_json(node, "user", "list")["users"]
    assert [u["username"] for u in users] == ["alice"]
    table = im(node, "user", "list")
    assert table.returncode == 0 and table.stdout.split()[:2] == ["ID", "USERNAME"] and "alice" in table.stdout

    async with Client(node.url) as web, Client(node.url) as ios:
        await web.login("alice", "secret-pw", "web")
        await ios.login("alice", "secret-pw", "ios")
        shown = im_json(node, "user", "show", "alice")
        assert sorted(s["terminal"] for s in shown["sessions"]) == ["ios", "web"]
        assert im_json(node, "user", "show", str(created["id"]))["username"] == "alice"  # by id too

        kicked = im_json(node, "user", "kick", "alice", "--terminal", "web")
        assert [k["terminal"] for k in kicked["kicked"]] == ["web"]
        assert await asyncio.wait_for(web.wait_closed(), 5) == CloseCode.REPLACED
        assert web.kicked.is_set() and ios.connected

        disabled = im_json(node, "user", "disable", "alice")
        assert disabled["disabled"] is True and [k["terminal"] for k in disabled["kicked"]] == ["ios"]
        assert await asyncio.wait_for(ios.wait_closed(), 5) == CloseCode.REPLACED
    async with Client(node.url) as again:
        with pytest.raises(ServerError) as refused:
            await again.login("alice", "secret-pw", "web")
        assert refused.value.code == ErrorCode.ACCOUNT_DISABLED
    assert im_json(node, "user", "show", "alice")["disabled"] is True
    assert im_json(node, "user", "disable", "alice", "--enable")["disabled"] is False
    async with Client(node.url) as again:
        assert (await again.login("alice", "secret-pw", "web")).user_id == created["id"]
    missing = im(node, "user", "show", "nobody")
    assert missing.returncode == 3 and "no user 'nobody'" in missing.stderr


async def test_group_commands_list_show_dissolve(node: ServeProcess):
    async with Client(node.url) as owner, Client(node.url) as member:
        await new_user(owner)
        _, member_id = await new_user(member)
        group = await owner.group_create("ops-room", [member_id])
        group_id = group.group
        listed = im_json(node, "group", "list")["groups"]
        assert [(g["id"], g["name"], g["members"]) for g in listed] == [(group_id, "ops-room", 2)]
        shown = im_json(node, "group", "show", str(group_id))
        assert sorted(m["user"] for m in shown["member_list"]) == sorted([owner.user_id, member_id])
        assert im_json(node, "group", "dissolve", str(group_id))["dissolved"] is True
        events = [(await next_event(member, Op.GROUP_PUSH)).event]
        while events[-1] != "dissolved":  # ("created" may come first)
            events.append((await next_event(member, Op.GROUP_PUSH)).event)
        assert events[-1] == "dissolved"
    assert im_json(node, "group", "list")["groups"] == []
    assert im(node, "group", "show", str(group_id)).returncode == 3
    assert im(node, "group", "dissolve", "999999").returncode == 3


async def test_stats_metrics_and_cluster_nodes_on_one_node(node: ServeProcess):
    async with Client(node.url) as a, Client(node.url) as b:
        await new_user(a)
        _, b_id = await new_user(b, terminal="ios")
        for i in range(5):
            await a.send(b_id, f"hello {i}")
        stats = im_json(node, "stats")
        assert stats["connections"] == 2 and stats["messages"] == 5 and stats["state"] == "ready"
        # through typer's runner, in this process, against the real node
        result = runner.invoke(app, ["cluster", "nodes", "--json"],
                               env={"IM_ADMIN_URL": node.http_url, "IM_ADMIN_TOKEN": TOKEN, "IM_ROUTES": ""})
        assert result.exit_code == 0, result.output
        [row] = json.loads(result.output)
        assert row["address"] == node.url and row["connections"] == 2 and row["health"] == "ready"
        table = runner.invoke(app, ["cluster", "nodes"], env={"IM_ADMIN_URL": node.http_url, "IM_ADMIN_TOKEN": TOKEN,
                                                              "IM_ROUTES": ""})
        assert table.output.split()[:7] == ["ID", "ADDRESS", "CONNECTIONS", "MESSAGES_PER_S", "VERSION", "UPTIME",
                                            "HEALTH"]
        metrics = await asyncio.to_thread(_get, node.http_url + "/metrics")
    assert 'edgeim_frames_in_total{op="SEND"} 5.0' in metrics
    assert "edgeim_messages_total 5.0" in metrics
    assert 'edgeim_connections{terminal="ios"} 1.0' in metrics
    assert 'edgeim_logins_total{result="ok"}' in metrics
    assert "edgeim_send_latency_seconds_count 5.0" in metrics
    assert "edgeim_store_batch_size_bucket" in metrics and "edgeim_event_loop_lag_seconds_bucket" in metrics
    assert "process_resident_memory_bytes" in metrics and "process_cpu_seconds_total" in metrics


def _exited(node: ServeProcess) -> tuple[int, str]:
    """The exit code and the log of a node that stops by itself (drained); its pipes closed."""
    code = node.proc.wait(20)
    node.proc.stdout.close()
    log = node.proc.stderr.read()
    node.proc.stderr.close()
    return code, log


def _get(url: str, token: str = "") -> str:
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def test_refusals_have_their_exit_codes(serve_factory, node: ServeProcess):
    wrong = im(node, "stats", token="not-the-token-at-all")
    assert wrong.returncode == 5 and "refused --token or IM_ADMIN_TOKEN: it is not this node's" in wrong.stderr
    off = serve_factory(admin_token="off")  # the admin API is off
    refused = im(off, "user", "list")
    assert refused.returncode == 5 and "the admin API is off" in refused.stderr
    unreachable = im(None, "stats", url="http://127.0.0.1:1")
    assert unreachable.returncode == 4 and "cannot reach" in unreachable.stderr
    bad = runner.invoke(app, ["user", "list", "--url", "ftp://x"], env={"IM_ADMIN_TOKEN": TOKEN})
    assert bad.exit_code == 2
    # /debug/stacks is admin only; /version is not
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as denied:
        _get(node.http_url + "/debug/stacks")
    assert denied.value.code == 401
    denied.value.close()
    assert "thread MainThread" in _get(node.http_url + "/debug/stacks", TOKEN)
    assert json.loads(_get(node.http_url + "/version"))["version"]


async def test_cluster_drain_closes_clients_with_1001_and_the_node_exits_0(node: ServeProcess):
    async with Client(node.url) as client:
        await new_user(client)
        node_id = im_json(node, "stats")["node"]
        wrong = im(node, "cluster", "drain", "no-such-node")
        assert wrong.returncode == 3
        done = im(node, "cluster", "drain", node_id)
        assert done.returncode == 0, done.stderr
        assert await asyncio.wait_for(client.wait_closed(), 10) == CloseCode.GOING_AWAY
    assert _exited(node)[0] == 0


async def test_sigterm_drains_and_sighup_reloads(tmp_path: Path, serve_factory):
    config = tmp_path / "im.toml"
    config.write_text('log_level = "info"\nrate = 200\n')
    node = serve_factory(admin_token=TOKEN, config=str(config))
    async with Client(node.url) as client:
        await new_user(client)
        config.write_text('log_level = "debug"\nrate = 1\nburst = 1\nroute_ttl = 60\n')
        node.proc.send_signal(signal.SIGHUP)
        # the new budget (1 frame/s, burst 1) applies to connections already open too
        deadline = time.monotonic() + 10
        limited = False
        while not limited and time.monotonic() < deadline:
            try:
                await client.ping()
            except ServerError as err:
                limited = err.code == ErrorCode.RATE_LIMITED
        assert limited
        node.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(client.wait_closed(), 10) == CloseCode.GOING_AWAY
    code, log = _exited(node)
    assert code == 0
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    [reloaded] = [line for line in lines if line["msg"] == "configuration reloaded"]
    assert {"log_level", "rate", "burst"} <= set(reloaded["changed"])
    assert reloaded["ignored_need_restart"] == ["route_ttl"]


def test_migrate_brings_a_data_dir_to_the_schema_and_refuses_one_in_use(tmp_path: Path, node: ServeProcess):
    done = subprocess.run([str(IM), "migrate", "--data-dir", str(tmp_path / "fresh")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "schema at version" in done.stdout and (tmp_path / "fresh" / "edgeim.db").is_file()
    busy = subprocess.run([str(IM), "migrate", "--data-dir", str(node.data_dir)], capture_output=True, text=True,
                          timeout=60)
    assert busy.returncode == 1 and "in use" in busy.stderr


# -- a cluster: the registry in Redis, commands that cross nodes ---------------------------------

@pytest.fixture
def cluster(tmp_path, mysql_server, redis_server, rocketmq_server):
    database = mysql_server.new_database()
    routes = f"{redis_server.url}?prefix={redis_server.new_prefix()}"
    shared = dict(store=mysql_server.url(database), routes=routes, bus=f"rocketmq://{rocketmq_server.namesrv}",
                  token_secret="cluster-secret-" + uuid.uuid4().hex, admin_token=TOKEN)
    run = uuid.uuid4().hex[:8]
    started: list[ServeProcess] = []
    try:
        for name in "ab":
            node = ServeProcess(tmp_path / name, node_id=f"{run}-{name}", **shared)
            node.start()
            started.append(node)
        yield routes, started
    finally:
        for node in started:
            if node.alive:
                node.stop()
        mysql_server.drop_database(database)


async def test_cluster_nodes_lists_the_registry_and_drain_moves_clients(cluster):
    routes, (a, b) = cluster
    listed = im_json(a, "cluster", "nodes", "--routes", routes)
    assert [(n["address"], n["health"]) for n in listed] == [(a.url, "ready"), (b.url, "ready")]
    async with Client(a.url) as on_a, Client(b.url) as on_b:
        await new_user(on_a)
        name, user = await new_user(on_b)
        # a command given to node a reaches the session on node b
        kicked = im_json(a, "user", "kick", name)
        assert kicked["kicked"] == [{"terminal": "web", "node": listed[1]["id"]}]
        assert await asyncio.wait_for(on_b.wait_closed(), 10) == CloseCode.REPLACED
        done = im(a, "cluster", "drain", listed[0]["id"], "--routes", routes)  # found through the registry
        assert done.returncode == 0, done.stderr
        assert await asyncio.wait_for(on_a.wait_closed(), 10) == CloseCode.GOING_AWAY
    assert _exited(a)[0] == 0
    left = im_json(b, "cluster", "nodes", "--routes", routes)
    assert [n["id"] for n in left] == [listed[1]["id"]]
