"""`make serve` on a fresh checkout says what it does: each step announces itself and pip
shows its progress (the first install takes a minute or two), instead of `pip -q` silence.
Checked with `make -n` (what make would run), so nothing is installed."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on this machine")
def test_make_serve_announces_each_step_and_shows_pips_progress():
    # -B: as on a fresh checkout, every step; -n: printed, not run
    done = subprocess.run(["make", "-n", "-B", "serve"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    steps = [line.split("==> ", 1)[1].split(" ", 1)[0] for line in done.stdout.splitlines() if "echo \"==> " in line]
    assert steps[:2] == ["creating", "installing"] and steps[-1] == "starting" and "building" in steps
    [install] = [line for line in done.stdout.splitlines() if "pip install" in line and line.endswith(" -e .")]
    assert " -q" not in install
