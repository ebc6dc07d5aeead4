"""The browser tests' screenshots, listed at the end of every run that took some (pytest
hides a passing test's own output), so a CI log names the files to look at."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"
_STARTED = time.time()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    taken = sorted(p for p in ARTIFACTS.glob("*.png") if p.stat().st_mtime >= _STARTED) if ARTIFACTS.is_dir() else []
    if taken:
        terminalreporter.write_sep("-", f"{len(taken)} screenshots of the web tests in {ARTIFACTS}")
        for path in taken:
            terminalreporter.write_line(str(path))
