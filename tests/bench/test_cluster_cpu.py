"""bench/cluster.py --cpu: the CPU of the processes it started, by part, read from /proc."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import cluster  # noqa: E402

_BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ninput()"


def test_a_part_is_told_by_its_command_line_and_the_command_by_what_was_waited_for():
    before = cluster._cpu_by_part()
    # a child whose command line names a part (as mariadbd's does), alive when read
    server = subprocess.Popen([sys.executable, "-c", _BUSY, "mariadbd"], stdin=subprocess.PIPE)
    try:
        subprocess.run([sys.executable, "-c", _BUSY.replace("\ninput()", "")], check=True)  # the command: waited for
        for _ in range(100):
            after = cluster._cpu_by_part()
            if after.get("mariadbd", 0.0) >= 0.25:
                break
            time.sleep(0.05)
        assert after["mariadbd"] - before.get("mariadbd", 0.0) >= 0.25
        assert after["command"] - before["command"] >= 0.25
        assert "nodes" not in after  # nothing of that part runs here
    finally:
        server.communicate(b"\n", timeout=30)
