"""`im bench`: scenario files and their errors, the JTL format, a tiny real run through the
CLI against a real `im serve` with two load processes, and JMeter's report generator on a
JTL we wrote (when JMeter is in the cache: `make jmeter` puts it there). No timing is
asserted: the figures belong to the bench's own reports."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ServeProcess

from edgeim.bench import benchlib, jmeter_runner, jtl
from edgeim.bench.scenario import ScenarioError, load_scenario, shipped

JMETER_HEADER = ("timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,failureMessage,"
                 "bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect")


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def im(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgeim.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


# -- scenarios ---------------------------------------------------------------------------------------

def test_every_shipped_scenario_parses() -> None:
    names = set(shipped())
    assert {"send_1to1", "lists", "online", "group_fanout", "mixed"} <= names
    for name, path in shipped().items():
        scenario = load_scenario(path)
        assert scenario.name == name
        assert any(g.samplers for g in scenario.groups)
    online = load_scenario(shipped()["online"])
    assert online.users >= 50_000 and online.target.nodes >= 3 and online.processes >= 3
    assert load_scenario(shipped()["group_fanout"]).setup.group_size == 10_000


def test_im_bench_list_names_the_shipped_scenarios() -> None:
    done = im("bench", "list")
    assert done.returncode == 0, done.stderr
    for name in ("send_1to1", "lists", "online", "group_fanout", "mixed"):
        assert name in done.stdout


GOOD = """
name = "t"
[[thread_group]]
name = "g"
users = 2
loops = 1
  [[thread_group.sampler]]
  type = "friends"
"""


@pytest.mark.parametrize("text, message", [
    ("name = ", "not valid TOML"),
    ("name = 't'\n", "missing key 'thread_group'"),
    (GOOD.replace('type = "friends"', 'type = "teleport"'), "unknown sampler type 'teleport'"),
    (GOOD.replace("loops = 1", "loops = 1\nduration = 3"), "exactly one of duration"),
    (GOOD.replace("loops = 1", ""), "exactly one of duration"),
    (GOOD.replace("users = 2", "users = 0"), "users must be >= 1"),
    (GOOD.replace("users = 2", "users = 'many'"), "users must be int"),
    (GOOD + "colour = 1\n", "unknown key(s) colour"),
    (GOOD.replace('type = "friends"', 'type = "friends"\n  assert = ["vibes"]'), "unknown assertion 'vibes'"),
    (GOOD.replace('name = "g"', 'name = "g"\npeer_group = "nobody"'), "peer_group 'nobody'"),
    (GOOD.replace('type = "friends"', 'type = "group_send"'), "set [setup] groups and group_size"),
    (GOOD.replace("users = 2", "users = 40000"), "sockets per process"),
])
def test_bad_scenarios_are_refused_with_a_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_good_scenario_loads(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(GOOD)
    scenario = load_scenario(path)
    assert scenario.users == 2 and scenario.ceiling_kind == "echo"
    assert scenario.scaled(users=10).users == 10


def test_cli_bad_file_is_a_clear_message_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(GOOD.replace('type = "friends"', 'type = "teleport"'))
    done = im("bench", "run", str(path))
    assert done.returncode == 2
    assert "im bench:" in done.stderr and "unknown sampler type 'teleport'" in done.stderr
    assert "Traceback" not in done.stderr
    missing = im("bench", "run", "no-such-scenario")
    assert missing.returncode == 2 and "no scenario 'no-such-scenario'" in missing.stderr
    elsewhere = im("bench", "run", "send_1to1", "--cpus", "99999")
    assert elsewhere.returncode == 2 and "--cpus: CPU 99999 is not one this process may run on" in elsewhere.stderr
    not_jtl = tmp_path / "x.jtl"
    not_jtl.write_text("a,b\n1,2\n")
    report = im("bench", "report", str(not_jtl))
    assert report.returncode == 2 and "cannot read as a JTL" in report.stderr


# -- JTL ---------------------------------------------------------------------------------------------

def test_a_pinned_server_and_its_threads_run_on_the_cpus_given(tmp_path: Path) -> None:
    """--cpus: each server the bench starts (here the bare relay) runs on those CPUs only."""
    cpu = max(os.sched_getaffinity(0))
    cmd = [sys.executable, "-m", "edgeim.bench.baseline_relay", "--route", "--port", "0"]
    proc, url = benchlib.start_server(cmd, tmp_path / "relay.log", cpus=frozenset({cpu}))
    try:
        assert url.startswith("ws://")
        lists = {re.search(r"^Cpus_allowed_list:\s*(\S+)", (task / "status").read_text(), re.M)[1]
                 for task in Path(f"/proc/{proc.pid}/task").iterdir()}
    finally:
        benchlib.stop(proc)
    assert lists == {str(cpu)}


def test_jtl_has_jmeters_columns_and_formats(tmp_path: Path) -> None:
    path = tmp_path / "a.jtl"
    writer = jtl.JtlWriter(path)
    writer.write(1795749030993, 1.6, "send_1to1", "SEND_ACK", "OK", "senders 1-1", True, "", 84, 96, 3, 5,
                 "ws://127.0.0.1:1/ws")
    writer.write(1795749030994, 10.2, "login", "4002", "bad, very bad", "senders 1-2", False, 'no_error: "x", y', 0,
                 80, 3, 5, "ws://127.0.0.1:1/ws", connect_ms=3.4)
    writer.close()
    lines = path.read_text().splitlines()
    assert lines[0] == JMETER_HEADER
    assert lines[1] == "1795749030993,2,send_1to1,SEND_ACK,OK,senders 1-1,bin,true,,84,96,3,5,ws://127.0.0.1:1/ws,2,0,0"
    # a field with a comma or a quote is quoted, quotes doubled, as JMeter's CSV writer does
    assert lines[2] == ('1795749030994,10,login,4002,"bad, very bad",senders 1-2,bin,false,"no_error: ""x"", y",0,80,'
                        "3,5,ws://127.0.0.1:1/ws,10,0,3")
    samples = list(jtl.read_jtl(path))
    assert [s.success for s in samples] == [True, False]
    stats = jtl.summarize(samples)
    assert stats["TOTAL"].samples == 2 and stats["login"].error_pct == 100.0


def test_merge_orders_rows_by_timestamp(tmp_path: Path) -> None:
    parts = []
    for p, stamps in enumerate([(5, 1, 9), (2, 7)]):
        part = tmp_path / f"p{p}.jtl"
        w = jtl.JtlWriter(part)
        for t in stamps:
            w.write(t, 1, "x", "OK", "OK", f"g 1-{p}", True, "", 1, 1, 1, 1, "ws://h/ws")
        w.close()
        parts.append(part)
    assert jtl.merge(parts, tmp_path / "all.jtl") == 5
    assert [s.timestamp_ms for s in jtl.read_jtl(tmp_path / "all.jtl")] == [1, 2, 5, 7, 9]


# -- a real run --------------------------------------------------------------------------------------

TINY = """
name = "tiny"
description = "4 senders x 2 lanes x 10 loops to 4 receivers"
[load]
processes = 2
[[thread_group]]
name = "senders"
users = 4
loops = 10
in_flight = 2
peer_group = "receivers"
  [[thread_group.sampler]]
  type = "send_1to1"
  assert = ["ack", "no_error", "seq_in_order"]
[[thread_group]]
name = "receivers"
users = 4
"""


@pytest.fixture
def node(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = ServeProcess(tmp_path / "data")
    server.start()
    yield server
    server.stop()


def test_tiny_run_against_a_real_node_merges_two_load_processes(tmp_path: Path, node: ServeProcess) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(TINY)
    out = tmp_path / "out"
    done = im("bench", "run", str(scenario), "--target", node.url, "--out", str(out), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "elapsed" in done.stderr  # the live progress line
    rows = rows_of(out / "edgeim.jtl")
    assert ",".join(rows[0].keys()) == JMETER_HEADER
    assert len(rows) == 4 * 2 * 10
    assert all(r["label"] == "send_1to1" and r["success"] == "true" and r["responseCode"] == "SEND_ACK" for r in rows)
    # users alternate between the two load processes: all four senders' rows are in the one file
    assert {r["threadName"] for r in rows} == {f"senders 1-{k}" for k in range(1, 5)}
    stamps = [int(r["timeStamp"]) for r in rows]
    assert stamps == sorted(stamps)
    # the bare relay (the kind "ceiling" in file names) ran in the same run with the same
    # load, and both are side by side, its note a whole sentence
    assert len(rows_of(out / "ceiling.jtl")) == 80
    assert "side by side" in done.stdout and "== bare relay (ceiling.jtl)" in done.stdout
    assert "note: bare relay: bench/baseline_relay.py" in done.stdout and "how many times its." not in done.stdout
    report = (out / "report.html").read_text()
    assert "<svg" in report and "send_1to1: throughput" in report
    # one push in DELIVERY_SAMPLE (8) has its delivery latency measured: 80 pushes, 10 of them
    kinds = json.loads((out / "results.json").read_text())["kinds"]
    delivery = kinds["edgeim"]["delivery_ms"]
    assert delivery["samples"] == 10 and 0 <= delivery["median"] <= delivery["p99"]
    # every push reached its receiver, on the node and on the ceiling (whose pushes carry no body)
    assert kinds["edgeim"]["pushes"] == 80 and kinds["ceiling"]["pushes"] == 80
    assert "delivery median ms" in done.stdout
    # im bench report reads the JTL back
    summary = im("bench", "report", str(out / "edgeim.jtl"))
    assert summary.returncode == 0 and "send_1to1" in summary.stdout and "80" in summary.stdout
    # im bench doc writes the run into docs/benchmarks.md's generated part (here: twice, as
    # two runs of one scenario, medianed), leaving the prose around it as it was
    doc = tmp_path / "benchmarks.md"
    from edgeim.bench.docs import BEGIN, END
    doc.write_text(f"# prose before\n{BEGIN}\nold figures\n{END}\nprose after\n")
    wrote = im("bench", "doc", str(out), str(out), "--write", str(doc))
    text = doc.read_text()
    acks = json.loads((out / "results.json").read_text())["kinds"]["edgeim"]["stats"]["send_1to1"]["throughput"]
    assert wrote.returncode == 0, wrote.stderr
    assert text.startswith("# prose before\n") and text.endswith(f"{END}\nprose after\n") and "old figures" not in text
    assert "### tiny" in text and "2 runs; `send_1to1 /s` of each" in text
    assert text.count(f"| {acks:,.0f} |") >= 3  # both runs' rows and the median run's table
    assert f"`im bench run {scenario} --target {node.url} --out {out}`" in text
    refused = im("bench", "doc", str(tmp_path / "nothing-here"))
    assert refused.returncode == 2 and "not an `im bench run` folder" in refused.stderr


PROFILES = """
name = "profiles"
description = "2 users x 3 profile changes, each pushed to the other (friends by [setup])"
[setup]
friends = 1
[[thread_group]]
name = "changers"
users = 2
loops = 3
  [[thread_group.sampler]]
  type = "profile_set"
  assert = ["ack", "no_error"]
"""


def test_the_profile_set_sampler_changes_profiles(tmp_path: Path, node: ServeProcess) -> None:
    scenario = tmp_path / "profiles.toml"
    scenario.write_text(PROFILES)
    out = tmp_path / "out"
    done = im("bench", "run", str(scenario), "--target", node.url, "--out", str(out), timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = rows_of(out / "edgeim.jtl")
    assert len(rows) == 2 * 3
    assert all(r["label"] == "profile_set" and r["success"] == "true" and r["responseCode"] == "PROFILE_SET_OK"
               for r in rows)


@pytest.mark.skipif(not jmeter_runner.cached(), reason="JMeter is not in the cache: `make jmeter` assembles it (~45 s)")
def test_jmeters_report_generator_accepts_our_jtl(tmp_path: Path) -> None:
    path = tmp_path / "ours.jtl"
    writer = jtl.JtlWriter(path)
    for i in range(300):
        ok = i % 50 != 0
        writer.write(1795749030000 + i * 7, 0.5 + i % 9, "send_1to1" if i % 3 else "sync", "SEND_ACK" if ok else "4000",
                     "OK" if ok else "rate limited", f"p senders 1-{i % 4 + 1}", ok, "" if ok else "no_error: 4000",
                     84, 96, 4, 4, "ws://127.0.0.1:1/ws")
    writer.close()
    out = jmeter_runner.dashboard(path, tmp_path / "dashboard")
    assert (out / "index.html").exists()
    stats = (out / "statistics.json").read_text()
    assert '"send_1to1"' in stats and '"sync"' in stats and '"sampleCount" : 300' in stats


def test_processes_left_behind_are_none(tmp_path: Path) -> None:
    # the tiny run stops what it started by pid: nothing of ours still runs baseline_relay
    mine = [line for line in subprocess.run(["ps", "-o", "pid,args", "--ppid", str(os.getpid())],
                                            capture_output=True, text=True).stdout.splitlines()[1:]
            if "baseline_relay" in line]
    assert mine == []
