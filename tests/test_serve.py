"""``im serve`` as a user runs it: defaults, flags, env vars, health endpoints,
version negotiation, JSON logs, clean stop on SIGINT/SIGTERM, refused settings."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from harness import TEST_ENV, ServeProcess, everything_stored_for, new_user
from picows import WSError, WSListener, ws_connect

from edgeim.sdk import Client

#: the console script installed beside this interpreter (make test never puts .venv/bin on PATH)
IM = Path(sys.executable).with_name("im")


def run_im(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    assert IM.is_file(), f"the im console script is installed with the package, beside {sys.executable}"
    return subprocess.Popen([str(IM), *args], cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_no_flags_serves_embedded_defaults_and_stops_cleanly(tmp_path, sig):
    # no flags; IM_PORT=0 only so the test never collides with a real node on 8765
    proc = run_im("serve", cwd=tmp_path, env={"IM_PORT": "0"})
    banner = proc.stdout.readline()
    url = re.search(r"listening on (ws://\S+)", banner)[1]
    try:
        async with Client(url) as client:  # the default password cost on this path
            user_id = await client.register("frank", "secret-pw")
            assert (await client.login("frank", "secret-pw", "web")).user_id == user_id
        assert (tmp_path / "data" / "edgeim.db").is_file()
        assert (tmp_path / "data" / "token.secret").is_file()
        base = url.replace("ws://", "http://").removesuffix("/ws")
        assert http_get(base + "/healthz") == (200, "ok\n")
        assert http_get(base + "/readyz") == (200, "ready\n")
        assert http_get(base + "/nothing")[0] == 404
    finally:
        proc.send_signal(sig)
        code = proc.wait(20)
    logs = [json.loads(line) for line in proc.stderr.read().splitlines()]
    proc.stdout.close()
    proc.stderr.close()
    assert code == 0
    assert [entry["msg"] for entry in logs if entry["logger"] == "edgeim.cli"] == ["listening", "stopping", "stopped"]


async def test_flags_and_env_vars_set_the_node(tmp_path):
    port = _free_port()
    proc = run_im("serve", "--port", str(port), "--data-dir", str(tmp_path / "elsewhere"), "--node-id", "edge-a",
                  cwd=tmp_path, env={"IM_HOST": "127.0.0.1", "IM_LOG_LEVEL": "warning", **TEST_ENV})
    banner = proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    stderr = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert f"edgeim node edge-a listening on ws://127.0.0.1:{port}/ws" in banner
    assert (tmp_path / "elsewhere" / "edgeim.db").is_file()
    assert stderr == ""  # info logs are below the chosen level


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--log-level", "loud"], {}, "log_level"),
        ([], {"IM_PORT": "eighty"}, "IM_PORT"),
        (["--port", "70000"], {}, "port"),
        ([], {"IM_IDLE_TIMEOUT": "-1"}, "idle_timeout"),
        (["--cpus", "0-x"], {}, "cpus must be a CPU list"),
        ([], {"IM_CPUS": "4096"}, "CPU 4096 is not one this process may run on"),
    ],
)
def test_bad_settings_exit_non_zero_with_a_message(tmp_path, args, env, message):
    proc = run_im("serve", *args, cwd=tmp_path, env=env)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert message in err and "listening" not in out


def test_cpus_pins_every_thread_of_the_node(tmp_path):
    """--cpus: the node's threads, those there at the start and those it starts later
    (the SQLite writer, its readers), run only on the CPUs given."""
    cpu = max(os.sched_getaffinity(0))
    proc = run_im("serve", "--cpus", str(cpu), cwd=tmp_path, env={"IM_PORT": "0", **TEST_ENV})
    try:
        assert "listening on" in proc.stdout.readline()  # the store is open: its writer thread runs
        tasks = Path(f"/proc/{proc.pid}/task")
        allowed = {}
        for task in tasks.iterdir():
            status = (task / "status").read_text()
            allowed[task.name] = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        proc.stdout.close()
        proc.stderr.close()
    assert len(allowed) >= 2 and set(allowed.values()) == {str(cpu)}  # the loop's thread and the writer at least


def test_port_in_use_exits_non_zero(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_im("serve", "--port", str(port), cwd=tmp_path)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "cannot listen" in err and "listening on" not in out


async def test_version_negotiation(server):
    async def handshake(offer: str) -> str | None:
        transport, _ = await ws_connect(WSListener, server.url, extra_headers={"Sec-WebSocket-Protocol": offer})
        chosen = transport.response.headers.get("Sec-WebSocket-Protocol")
        transport.disconnect()
        await transport.wait_disconnected()
        return chosen

    assert await handshake("edgeim.v1") == "edgeim.v1"
    assert await handshake("edgeim.v7, edgeim.v1") == "edgeim.v1"
    with pytest.raises(WSError) as err:
        await handshake("edgeim.v7")
    assert "426" in str(err.value)


async def test_sigterm_flushes_accepted_sends_before_exit(server: ServeProcess):
    alice, bob = Client(server.url), Client(server.url)
    await alice.connect()
    await bob.connect()
    await new_user(alice)
    bob_name, bob_id = await new_user(bob)
    await bob.close()

    sends = [asyncio.ensure_future(alice.send(bob_id, f"f{n}")) for n in range(300)]
    while not any(s.done() for s in sends):  # the node is busy with them
        await asyncio.sleep(0.001)
    assert server.stop(signal.SIGTERM) == 0
    results = await asyncio.gather(*sends, return_exceptions=True)
    acked = [r for r in results if not isinstance(r, BaseException)]
    await alice.close()

    server.start()
    stored = await everything_stored_for(server.url, bob_name)
    assert {a.msg_id for a in acked} <= {m.id for m in stored}
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))  # no gap, no repeat
    assert len({m.cmid for m in stored}) == len(stored)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def test_second_node_on_the_same_data_dir_is_refused(server: ServeProcess, tmp_path):
    proc = run_im("serve", "--port", "0", "--data-dir", str(server.data_dir), cwd=tmp_path)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "in use by another running node" in err and "listening on" not in out
    assert server.alive


def _start_fails(tmp_path: Path, data_dir: Path) -> tuple[str, list[dict]]:
    proc = run_im("serve", "--port", "0", "--data-dir", str(data_dir), cwd=tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "listening on" not in out
    lines = err.splitlines()
    logs = [json.loads(line) for line in lines if line.startswith("{")]
    assert all(line.startswith("{") or line.startswith("im serve: cannot start:") for line in lines), err  # no traceback
    return err, logs


def test_a_damaged_store_is_refused_at_start_with_a_clear_message(tmp_path, server: ServeProcess):
    server.stop()
    db = server.data_dir / "edgeim.db"
    data = bytearray(db.read_bytes())
    data[:100] = b"\0" * 100  # the header is gone
    db.write_bytes(data)
    err, logs = _start_fails(tmp_path, server.data_dir)
    (entry,) = [e for e in logs if e["msg"] == "cannot start"]
    assert "damaged" in entry["error"] and "backup" in entry["error"]


def test_an_unusable_data_dir_is_not_reported_as_cannot_listen(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data dir should be")
    err, logs = _start_fails(tmp_path, blocker / "data")
    assert [e["msg"] for e in logs if e["level"] == "error"] == ["cannot start"]
    assert "cannot use data dir" in err and "cannot listen" not in err
