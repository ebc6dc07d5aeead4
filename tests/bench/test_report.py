"""The bench report as a reader takes it: the charts' axes are labelled where their ticks
are, the lines do not fall at the run's cut-off last second, a report of one JTL has no
empty comparison, `im bench run --help` keeps its bracketed text, `im bench centrifugo` runs
send_1to1 with the peer, the notes are sentences and the baseline is called what it is; a
merged JTL counts the whole test's threads."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from edgeim.bench import docs, jtl
from edgeim.bench.runner import NAMES, RELAY_NOTE
from edgeim.cli.main import app

START = 1_795_000_000_000


def steady(seconds: float, rate: int = 100, label: str = "send") -> list[jtl.Sample]:
    """``rate`` samples per second for ``seconds``, each 2 ms long."""
    return [jtl.Sample(START + i * 1000 // rate, 2.0, label, True, 100, 80) for i in range(int(seconds * rate))]


def x_ticks(svg: str) -> list[tuple[float, str]]:
    """The x axis' tick labels of one chart: (x, text) of the labels under the axis."""
    axis_y = float(re.search(r'<line x1="[\d.]+" y1="([\d.]+)" x2="[\d.]+" y2="\1" stroke="#000"/>', svg)[1])
    return [(float(x), text) for x, y, text in
            re.findall(r'<text x="([\d.]+)" y="([\d.]+)" font-size="10" text-anchor="middle">([^<]*)</text>', svg)
            if float(y) == axis_y + 14]


def charts(path: Path) -> dict[str, str]:
    page = path.read_text()
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    return {re.search(r'font-weight="bold">([^<]*)</text>', svg)[1]: svg for svg in svgs}


def test_time_ticks_are_round_and_where_their_label_says(tmp_path: Path):
    report = tmp_path / "report.html"
    jtl.html_report(report, "t", {"edgeim": steady(5.6)}, "", [])
    ticks = x_ticks(charts(report)["send: throughput"])
    labels = [float(text) for _, text in ticks]
    assert labels == [0, 1, 2, 3, 4, 5]  # the old axis said "0 1 2 4 5" (1.25 s steps, rounded)
    (x0, _), (x1, _) = ticks[0], ticks[1]
    assert all(abs(x - (x0 + (x1 - x0) * value)) < 0.2 for (x, _), value in zip(ticks, labels))  # evenly placed


def test_the_last_partial_second_is_scaled_or_left_out():
    # 100 samples/s for 4.6 s: the last bucket covers 0.6 s of the run
    rates = [n for _, n, _, _ in jtl.timeline(steady(4.6))["send"]]
    assert len(rates) == 5 and all(95 <= n <= 105 for n in rates), rates
    # for 4.3 s it covers 0.3 s: too short to be a rate, left out
    rates = [n for _, n, _, _ in jtl.timeline(steady(4.3))["send"]]
    assert len(rates) == 4 and all(95 <= n <= 105 for n in rates), rates


def test_a_report_of_one_jtl_has_no_empty_side_by_side(tmp_path: Path):
    path = tmp_path / "one.jtl"
    writer = jtl.JtlWriter(path)
    for s in steady(3):
        writer.write(s.timestamp_ms, s.elapsed_ms, s.label, "SEND_ACK", "OK", "senders 1-1", True, "", 100, 80, 1, 1,
                     "ws://127.0.0.1:1/ws")
    writer.close()
    done = subprocess.run([sys.executable, "-m", "edgeim.cli", "bench", "report", str(path), "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Side by side" not in page and "<pre></pre>" not in page
    assert "send: throughput" in page
    both = tmp_path / "both.html"
    jtl.html_report(both, "t", {"edgeim": steady(3), NAMES["ceiling"]: steady(3)}, "send /s  100  100", [])
    assert "<h2>Side by side</h2>" in both.read_text()


def test_bench_run_help_keeps_the_text_in_brackets():
    result = CliRunner().invoke(app, ["bench", "run", "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "[default bench-results/NAME-TIME]" in text and "Members per group of [setup]." in text


def test_the_baseline_is_the_bare_relay_and_the_note_is_whole_sentences():
    assert NAMES["ceiling"] == "bare relay"
    assert RELAY_NOTE.startswith("bare relay: bench/baseline_relay.py --route")
    assert RELAY_NOTE.endswith(".") and "how many times its." not in RELAY_NOTE
    assert "not a limit" in RELAY_NOTE


def test_a_run_folder_of_before_reads_with_the_new_names_and_the_same_figures(tmp_path: Path):
    folder = tmp_path / "lists-6"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({"scenario": "lists", "description": "pages", "command": "x",
                                                     "other_cpu_pct": 2.0}))
    old_note = ("ceiling: bench/baseline_relay.py --route, a bare picows server answering with the node's reply sizes"
                " and relaying SENDs: no store, no session, no codec. Every ratio column is edgeim / that column: for"
                " throughput the share of it edgeim reaches, for latency how many times its.")
    (folder / "summary.md").write_text("`im bench run lists`\n\n| | edgeim | ceiling | ratio |\n|---|---|---|---|\n"
                                       "| all samplers /s | 51,526 | 45,054 | 1.14 |\n\n" + old_note + "\n")
    text = docs.section([docs.load(folder), docs.load(folder)])
    assert "ceiling" not in text and "how many times its." not in text
    assert "| run | edgeim | bare relay | bare relay ratio |" in text
    assert "| all samplers /s | 51,526 | 45,054 | 1.14 |" in text and RELAY_NOTE in text


def test_merged_thread_counts_are_the_whole_tests(tmp_path: Path):
    parts = []
    for p, rows in enumerate([[(1, "senders 1-1", 2, 3), (5, "senders 1-1", 1, 2)],
                              [(2, "senders 1-2", 2, 3), (3, "receivers 2-1", 1, 3)]]):
        part = tmp_path / f"part{p}.jtl"
        writer = jtl.JtlWriter(part)
        for t, thread, grp, every in rows:
            writer.write(t, 1, "x", "OK", "OK", thread, True, "", 1, 1, grp, every, "ws://127.0.0.1:1/ws")
        writer.close()
        parts.append(part)
    assert jtl.merge(parts, tmp_path / "all.jtl") == 4
    import csv
    with open(tmp_path / "all.jtl", newline="") as f:
        merged = [(int(r["timeStamp"]), int(r["grpThreads"]), int(r["allThreads"])) for r in csv.DictReader(f)]
    # each process counted its own (2 senders each); the test had 4 senders, 6 threads in all
    assert merged == [(1, 2, 3), (2, 4, 6), (3, 1, 6), (5, 3, 5)]


def test_the_comparison_splits_one_nodes_cpu_between_its_event_loop_and_its_other_threads() -> None:
    """A node the run started: its CPU per sample, then the event loop's share and the rest
    (the store's writer). Running nodes given with --target have no CPU figures."""
    from edgeim.bench.runner import KindResult, comparison
    from edgeim.bench.scenario import load_scenario, resolve

    stats = {name: jtl.Stats(name, 1000, 0, 1.0, 1, 1, 1, 1, 1, 1, 0, 0) for name in ("send_1to1", "TOTAL")}
    cpu = {"server_cpu_s": 0.05, "server_loop_cpu_s": 0.02, "client_cpu_pct": 50.0, "machine_busy_pct": 100.0,
           "other_cpu_pct": 0.0, "irq_softirq_pct": 0.0, "steal_pct": 0.0, "elapsed_s": 1.0}
    scenario = load_scenario(resolve("send_1to1"))
    started = KindResult("edgeim", [], stats, 0, 0, None, 2, cpu, Path("edgeim.jtl"), 1.0, servers=1)
    table = comparison(scenario, {"edgeim": started})
    lines = {line[:30].strip(): line[30:].split() for line in table.splitlines()}
    assert lines["server CPU us/sample"] == ["50.0"]
    assert lines["of it, the event loop"] == ["20.0"]
    assert lines["of it, other threads"] == ["30.0"]
    targeted = KindResult("edgeim", [], stats, 0, 0, None, 2, {}, Path("edgeim.jtl"), 1.0, servers=0)
    assert "event loop" not in comparison(scenario, {"edgeim": targeted})


def test_bench_centrifugo_runs_send_1to1_with_the_peer_and_no_cpus(monkeypatch, tmp_path: Path):
    from edgeim.bench import runner
    calls = []

    def fake_run(scenario, out, **kwargs):
        calls.append((scenario.name, out, kwargs))
        return {"text": "ran"}

    monkeypatch.setattr(runner, "run", fake_run)
    result = CliRunner().invoke(app, ["bench", "centrifugo", "--duration", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    [(name, out, kwargs)] = calls
    assert name == "send_1to1" and out == tmp_path / "o"
    assert kwargs["peer"] is True and kwargs["ceiling"] is True and kwargs["cpus"] == frozenset()
