"""The cpus setting's CPU lists: Linux's syntax, and only CPUs this process may run on; pinning
the node's threads passes over one that ended meanwhile."""
from __future__ import annotations

import os

import pytest

from edgeim.ops.config import Config, ConfigError, cpu_list

ALLOWED = sorted(os.sched_getaffinity(0))


def test_a_cpu_list_names_single_cpus_and_ranges():
    first, last = ALLOWED[0], ALLOWED[-1]
    assert cpu_list(str(first)) == {first}
    assert cpu_list(f"{first}-{first}") == {first}
    assert cpu_list(f" {last} ,{first}") == {first, last}
    run = [cpu for cpu in ALLOWED if cpu <= first + 1]  # this machine's first two CPUs, if it has them in a row
    assert cpu_list(f"{first}-{run[-1]}") == set(run)


@pytest.mark.parametrize(("text", "message"), [
    ("", "must be a CPU list"),
    ("1;2", "must be a CPU list"),
    ("-1", "must be a CPU list"),
    ("0-", "must be a CPU list"),
    ("3-1", "runs backwards"),
    ("100000", "CPU 100000 is not one this process may run on"),
])
def test_anything_else_is_refused_with_what_is_wrong(text, message):
    with pytest.raises(ConfigError, match=message):
        cpu_list(text)


def test_the_setting_is_checked_when_the_config_loads():
    assert Config.load({"cpus": str(ALLOWED[0])}, env={}).cpus == str(ALLOWED[0])
    with pytest.raises(ConfigError, match="cpus"):
        Config.load({"cpus": "two"}, env={})


def test_pinning_passes_over_a_thread_that_ended_since_the_listing():
    """``_pin`` lists /proc/self/task, then pins each thread: one that ends between the two
    is not an error (in a child process: pinning must not touch the test runner)."""
    import subprocess
    import sys
    code = f"""
import os, threading
from edgeim.cli import main
ended = threading.Thread(target=lambda: None)
ended.start()
gone = ended.native_id
ended.join()
listing = os.listdir
os.listdir = lambda path: listing(path) + [str(gone)] if path == "/proc/self/task" else listing(path)
main._pin(frozenset({{{ALLOWED[-1]}}}))
print(sorted(os.sched_getaffinity(0)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"[{ALLOWED[-1]}]"
