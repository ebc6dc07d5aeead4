"""The real-server harness itself (tests/servers.py): a missing binary fails, never skips."""
from __future__ import annotations

import pytest
from servers import find_binary, free_port


def test_a_missing_server_binary_fails_with_what_to_install():
    with pytest.raises(pytest.fail.Exception, match=r"no-such-server is not installed: `apt-get install -y some-pkg`"):
        find_binary("no-such-server", "some-pkg")


def test_sbin_is_searched_for_server_binaries(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_binary("mariadbd", "mariadb-server").endswith("/mariadbd")  # in /usr/sbin on Debian


def test_free_port_is_a_loopback_port():
    assert 1024 <= free_port() <= 65535
