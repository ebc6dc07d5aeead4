"""The admin API works out of the box on one machine: a node with no admin token set
generates one into its data dir (mode 0600, as the token secret), says where at start, and
the ``im`` admin commands on the same machine read it from there; a node elsewhere needs
the token given."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ServeProcess

from edgeim.cli.admin import _loopback

IM = Path(sys.executable).with_name("im")


def im(*args: str, cwd: Path, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("IM_ADMIN_TOKEN", "IM_ADMIN_TOKEN_FILE", "IM_DATA_DIR")}
    return subprocess.run([str(IM), *args], cwd=cwd, env={**clean, "IM_ADMIN_URL": url, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def node(tmp_path: Path):
    """``im serve`` with no admin token set, its data dir the default ./data of tmp_path."""
    served = ServeProcess(tmp_path / "data")
    served.start()
    yield served
    if served.alive:
        served.stop()


def test_a_node_generates_its_admin_token_and_local_commands_find_it(tmp_path: Path, node: ServeProcess):
    kept = tmp_path / "data" / "admin.token"
    said = [node.proc.stdout.readline() for _ in range(2)]  # after the banner: the web app's line, then
    assert said[0].startswith("web app") and said[1].startswith(f"admin token: {kept} ")  # where the token is
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    token = kept.read_text()
    assert len(token) == 64 and int(token, 16) >= 0

    # run where the node was started: its ./data, no token given
    created = im("user", "create", "frank", "--password", "secret-pw", "--json", cwd=tmp_path, url=node.http_url)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["username"] == "frank"
    # from elsewhere, naming the data dir (flag or IM_DATA_DIR)
    listed = im("user", "list", "--json", "--data-dir", str(tmp_path / "data"), cwd=Path("/"), url=node.http_url)
    assert listed.returncode == 0, listed.stderr
    assert [u["username"] for u in json.loads(listed.stdout)["users"]] == ["frank"]
    stats = im("stats", "--json", cwd=Path("/"), url=node.http_url, IM_DATA_DIR=str(tmp_path / "data"))
    assert stats.returncode == 0 and json.loads(stats.stdout)["state"] == "ready"

    node.restart()  # the same token after a restart
    assert kept.read_text() == token
    again = im("user", "show", "frank", cwd=tmp_path, url=node.http_url)
    assert again.returncode == 0 and "frank" in again.stdout


def test_without_the_token_the_commands_say_where_it_would_be(tmp_path: Path, node: ServeProcess):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = im("user", "list", cwd=elsewhere, url=node.http_url)
    assert missing.returncode == 5
    assert f"no admin token: {Path('data') / 'admin.token'} does not exist" in missing.stderr
    other = elsewhere / "data"  # another node's data dir: its token is not this node's
    other.mkdir()
    (other / "admin.token").write_text("x" * 64)
    wrong = im("user", "list", cwd=elsewhere, url=node.http_url)
    assert wrong.returncode == 5
    assert "refused the token in data/admin.token: it is not this node's admin token" in wrong.stderr


def test_a_token_that_is_set_is_used_and_none_is_generated(tmp_path: Path, serve_factory):
    node = serve_factory(admin_token="set-admin-token-0123456789")
    assert node.proc.stdout.readline().startswith("web app")  # no "admin token:" line
    assert not (node.data_dir / "admin.token").exists()
    done = im("stats", "--json", cwd=tmp_path, url=node.http_url, IM_ADMIN_TOKEN="set-admin-token-0123456789")
    assert done.returncode == 0, done.stderr
    off = serve_factory(admin_token="off")
    assert not (off.data_dir / "admin.token").exists()
    refused = im("stats", cwd=tmp_path, url=off.http_url, IM_ADMIN_TOKEN="set-admin-token-0123456789")
    assert refused.returncode == 5 and "the admin API is off" in refused.stderr


def test_only_a_node_on_this_machine_is_looked_up_in_the_data_dir(tmp_path: Path):
    assert _loopback("http://127.0.0.1:8766") and _loopback("http://localhost:8766") and _loopback("http://[::1]:1")
    assert not _loopback("http://192.0.2.1:8766") and not _loopback("https://chat.example.com")
