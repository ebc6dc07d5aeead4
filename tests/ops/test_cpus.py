"""The cpus setting's CPU lists: Linux's syntax, and only CPUs this process may run on."""
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
