"""The README's SDK example runs as written against a real node."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_sdk_example_runs(serve_factory):
    """Against a node on the product defaults (friends only), as a reader would run it."""
    server = serve_factory(strangers_may_send=0)
    example = re.search(r"```python\n(.*?)```", README.read_text(), re.S)[1]
    script = example.replace("ws://127.0.0.1:8765/ws", server.url)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "hi", "bob"]
