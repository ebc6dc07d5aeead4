"""The durable peer of `im bench run --peer-durable`: Centrifugo configured for its Redis
engine with a history, a Redis of its own that fsyncs every write before it answers, started
by the runner before Centrifugo and counted as one of the peer's servers; its column in the
side-by-side table and its note, with Redis's share of its CPU (a CPU window counts each
server on its own); the note of a pinned run (--cpus), which names the servers it started.
(Centrifugo itself is not built in the test run: a stand-in process takes its place where
the runner starts it.)"""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from edgeim.bench import benchlib, jtl, peer, runner
from edgeim.bench.scenario import load_scenario, resolve


def test_the_durable_config_puts_centrifugo_on_redis_with_a_history_and_the_plain_one_does_not():
    plain = peer.config(8000)
    assert "engine" not in plain
    [dm] = plain["channel"]["namespaces"]
    assert "history_size" not in dm and dm["allow_publish_for_client"]
    durable = peer.config(8000, "127.0.0.1:6400")
    assert durable["engine"] == {"type": "redis", "redis": {"address": ["redis://127.0.0.1:6400"]}}
    [dm] = durable["channel"]["namespaces"]
    assert dm["history_size"] > 0 and dm["history_ttl"] != "0s" and dm["allow_subscribe_for_client"]


def test_the_durable_peers_redis_appends_and_fsyncs_every_write_before_it_answers(tmp_path: Path):
    proc, address = peer.start_redis(tmp_path)
    try:
        host, port = address.split(":")
        client = redis.Redis(host=host, port=int(port))
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}
        assert client.config_get("save") == {"save": ""}
        client.xadd("history", {"d": "written"})
        appended = b"".join(p.read_bytes() for p in tmp_path.rglob("*.aof"))
        assert b"written" in appended  # in the file once the reply came
        client.close()
    finally:
        benchlib.stop(proc)
    assert proc.returncode is not None


@pytest.fixture
def stand_ins(monkeypatch) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """Centrifugo's place taken by a sleeping process: (it, the Redis it was given), per start."""
    started: list[tuple[subprocess.Popen[bytes], str]] = []

    def start_centrifugo(folder: Path, timeout: float = 30.0, cpus: frozenset[int] = frozenset(),
                         redis: str = "") -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        started.append((proc, redis))
        return proc, "ws://127.0.0.1:1/connection/websocket"

    monkeypatch.setattr(peer, "start_centrifugo", start_centrifugo)
    yield started
    for proc, _ in started:
        benchlib.stop(proc)


def test_the_runner_starts_redis_first_hands_it_to_every_centrifugo_and_stops_it_last(stand_ins, tmp_path: Path):
    scenario = load_scenario(resolve("send_1to1"))
    servers, urls = runner._start_servers(scenario, "centrifugo_durable", tmp_path, [], {}, 0)
    try:
        *centrifugos, store = servers
        assert centrifugos == [proc for proc, _ in stand_ins]
        assert len(urls) == len(centrifugos) == scenario.target.nodes
        [address] = {given for _, given in stand_ins}
        host, port = address.split(":")
        client = redis.Redis(host=host, port=int(port))
        assert client.info("server")["process_id"] == store.pid  # its CPU is the peer's
        client.close()
    finally:
        for proc in servers:
            benchlib.stop(proc)


def test_the_plain_peer_runs_on_no_redis(stand_ins, tmp_path: Path):
    scenario = load_scenario(resolve("send_1to1"))
    servers, _ = runner._start_servers(scenario, "centrifugo", tmp_path, [], {}, 0)
    assert servers == [proc for proc, _ in stand_ins] and [given for _, given in stand_ins] == [""] * len(servers)
    assert not (tmp_path / "redis").exists()


def test_the_durable_peer_has_its_own_column_as_wide_as_its_name():
    stats = {name: jtl.Stats(name, 1000, 0, 1.0, 1, 1, 1, 1, 1, 1, 0, 0) for name in ("send_1to1", "TOTAL")}
    cpu = {"server_cpu_s": 0.05, "server_loop_cpu_s": 0.02, "client_cpu_pct": 50.0, "machine_busy_pct": 100.0,
           "other_cpu_pct": 0.0, "irq_softirq_pct": 0.0, "steal_pct": 0.0, "elapsed_s": 1.0}
    scenario = load_scenario(resolve("send_1to1"))
    results = {kind: runner.KindResult(kind, [], stats, 0, 0, None, 2, dict(cpu, server_cpu_s=0.05 * k),
                                       Path(f"{kind}.jtl"), 1.0)
               for k, kind in enumerate(("edgeim", "centrifugo", "centrifugo_durable"), 1)}
    table = runner.comparison(scenario, results).splitlines()
    header = table[0].split()
    assert header == ["edgeim", "centrifugo", "ratio", "centrifugo", "durable", "ratio"]
    assert len({len(line) for line in table if line.startswith("server CPU")} | {len(table[0])}) == 1
    cpu_row = next(line for line in table if line.startswith("server CPU us/sample"))[30:].split()
    assert cpu_row == ["50.0", "100.0", "0.50", "150.0", "0.33"]


def test_the_cpus_note_names_the_servers_the_run_started_and_no_other():
    def result(kind: str, servers: int = 1) -> runner.KindResult:
        return runner.KindResult(kind, [], {}, 0, 0, None, 2, {}, Path(f"{kind}.jtl"), 1.0, servers=servers)

    everything = {k: result(k) for k in ("edgeim", "ceiling", "centrifugo", "centrifugo_durable")}
    note = runner.cpus_note(frozenset({1}), everything)
    assert note.startswith("every server this run started ran on CPU 1 only (--cpus)")
    assert all(name in note for name in ("the node", "the bare relay", "Centrifugo", "Redis"))
    only_node = runner.cpus_note(frozenset({0, 1}), {"edgeim": result("edgeim")})
    assert "CPU 0,1 only" in only_node and "the node with its threads;" in only_node
    assert not any(name in only_node for name in ("relay", "Centrifugo", "Redis"))
    targeted = runner.cpus_note(frozenset({1}), {"edgeim": result("edgeim", servers=0), "ceiling": result("ceiling")})
    assert "the bare relay;" in targeted and "node" not in targeted.split(":")[1]
    assert "started no server" in runner.cpus_note(frozenset({1}), {"edgeim": result("edgeim", servers=0)})


def test_the_durable_peers_note_says_what_redis_took_of_its_cpu(tmp_path: Path):
    stats = {name: jtl.Stats(name, 1000, 0, 1.0, 1, 1, 1, 1, 1, 1, 0, 0) for name in ("send_1to1", "TOTAL")}
    cpu = {"server_cpu_s": 0.08, "server_loop_cpu_s": 0.01, "server_cpu_s_each": [0.05, 0.03],
           "client_cpu_pct": 50.0, "machine_busy_pct": 100.0, "other_cpu_pct": 0.0, "irq_softirq_pct": 0.0,
           "steal_pct": 0.0, "elapsed_s": 1.0}
    results = {kind: runner.KindResult(kind, [], stats, 0, 0, None, 2, dict(cpu), tmp_path / f"{kind}.jtl", 1.0)
               for kind in ("edgeim", "centrifugo_durable")}
    for kind in results:
        jtl.JtlWriter(tmp_path / f"{kind}.jtl").close()
    data = runner.write_outputs(load_scenario(resolve("send_1to1")), tmp_path, results)
    [note] = [n for n in data["notes"] if n.startswith("centrifugo durable:")]
    assert note.endswith("(in this run Redis took 30.0 µs a sample of 80.0).")


def test_a_cpu_window_gives_each_servers_own_cpu():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        window = benchlib.CpuWindow(busy.pid, other_server_pids=[idle.pid])
        window.start()
        time.sleep(0.5)
        cpu = window.stop(0.0)
    finally:
        benchlib.stop(busy)
        benchlib.stop(idle)
    spun, slept = cpu["server_cpu_s_each"]
    assert spun > 0.1 and slept < 0.05 and abs(spun + slept - cpu["server_cpu_s"]) < 0.02
