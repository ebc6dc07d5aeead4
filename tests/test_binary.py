"""The single-file executable (make binary): built with PyInstaller from this checkout, it
runs from a clean directory, with an empty environment and no virtualenv, `im serve` on
embedded defaults (the Cython codec inside), and stops cleanly.

``IM_BINARY=path`` tests a binary built already (``make test-binary``); otherwise the test
builds one into its temporary directory (about a minute)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edgeim.sdk import Client

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("IM_BINARY")
    if given:
        return Path(given).resolve()
    work = tmp_path_factory.mktemp("pyinstaller")
    pyinstaller = Path(sys.executable).with_name("pyinstaller")
    assert pyinstaller.is_file(), "PyInstaller is in the test extra: pip install -e '.[test]'"
    subprocess.run([str(pyinstaller), "--noconfirm", "--log-level", "ERROR", "--distpath", str(work / "dist"),
                    "--workpath", str(work / "build"), str(ROOT / "ops" / "binary" / "im.spec")],
                   check=True, capture_output=True, timeout=900)
    return work / "dist" / "im"


async def test_the_binary_serves_embedded_defaults_from_a_clean_directory(binary: Path, tmp_path: Path):
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(binary, clean / "im")
    # nothing of this checkout or venv; strangers may send so that one message shows the store works
    env = {"PATH": "/usr/bin:/bin", "HOME": str(clean), "IM_PORT": "0", "IM_STRANGERS_MAY_SEND": "1"}
    version = subprocess.run([str(clean / "im"), "version", "--json"], cwd=clean, env=env, capture_output=True,
                             text=True, timeout=60)
    assert version.returncode == 0, version.stderr
    info = json.loads(version.stdout)
    assert info["frozen"] is True and info["codec"] == "cython"
    proc = subprocess.Popen([str(clean / "im"), "serve"], cwd=clean, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        banner = proc.stdout.readline()
        found = re.search(r"listening on (ws://\S+) and (http://\S+)", banner)
        assert found, banner + proc.stderr.read()
        async with Client(found[1]) as a, Client(found[1]) as b:
            await a.register("ann", "secret-pw")
            await a.login("ann", "secret-pw", "web")
            b_id = await b.register("bob", "secret-pw")
            await b.login("bob", "secret-pw", "web")
            ack = await a.send(b_id, "from the binary")
            assert ack.seq == 1
        with urllib.request.urlopen(found[2] + "/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
        # the web app is inside (make test builds it before the suite)
        assert proc.stdout.readline() == f"web app: {found[2]}/\n"
        with urllib.request.urlopen(found[2] + "/", timeout=5) as response:
            assert b'<div id="app">' in response.read()
        assert (clean / "data" / "edgeim.db").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert code == 0
