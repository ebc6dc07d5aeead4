"""The in-process benchmarks (the store's, the filter of stored keys, the receiving half
of a connection) run to their end on a tiny load and print their table (store_append.py's
baseline once built its schema from the last migration step alone, and failed when that
step began to read an older table). No figure is asserted."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=BENCH)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_store_append_measures_the_store_and_its_baseline():
    out = run("store_append.py", "--runs", "1", "--appenders", "3", "--per-appender", "2", "--baseline-count", "5")
    for mode in ("FULL", "NORMAL"):
        line = next(line for line in out.splitlines() if line.startswith(f"synchronous={mode}"))
        assert "SqliteStore" in line and "baseline (commit per message)" in line


def test_search_index_finds_every_text_it_cut_out_and_prints_three_rows():
    out = run("search_index.py", "--messages", "600", "--convs", "3", "--searches", "4", "--runs", "1")
    rows = [line for line in out.splitlines() if "us CPU/message" in line]
    assert [row.split("  ")[0].split(" (")[0].split(":")[0] for row in rows] == ["SqliteStore", "baseline", "baseline"]


def test_writer_sql_prints_every_shape():
    out = run("writer_sql.py", "--messages", "500", "--batch", "50", "--convs", "5", "--runs", "1")
    rows = [line.split()[0] for line in out.splitlines() if "us CPU/message" in line]
    assert rows == ["savepoint", "memory", "or-fail"]


def test_store_growth_prints_a_line_a_window_with_the_writer_by_part():
    out = run("store_growth.py", "--messages", "4000", "--window", "2000", "--pairs", "5")
    header, *rows = out.splitlines()
    assert header.split() == ["messages", "commit", "µs", "key", "pass", "µs", "key", "merge", "µs", "writer", "µs"]
    assert [row.split()[0] for row in rows] == ["2,000", "4,000"]
    first = [float(v) for v in rows[0].split()[1:]]
    assert first[0] > 0 and abs(first[3] - sum(first[:3])) <= 0.02  # the commits were timed; the writer: the sum


def test_store_growth_pieces_time_every_piece_of_the_commit_and_add_up_to_it():
    out = run("store_growth.py", "--messages", "3000", "--window", "1500", "--pairs", "5", "--feed", "300", "--pieces")
    table = out.split("the commit, piece by piece, µs a message over all 3,000:\n")[1].splitlines()
    pieces = {line[:30].strip(): float(line[30:]) for line in table}
    assert list(pieces) == ["COMMIT (WAL pages, fsync)", "multi-row INSERT", "lay_out", "senders' cursor UPDATE",
                            "_hold_keys", "unknown (retry keys)", "settle", "the rest", "the commit in all"]
    whole = pieces.pop("the commit in all")
    assert all(used > 0 for name, used in pieces.items() if name != "the rest")  # each is hooked into today's store
    assert abs(sum(pieces.values()) - whole) <= 0.05


def test_store_growth_feeds_commits_of_the_size_asked():
    out = run("store_growth.py", "--messages", "1500", "--window", "500", "--pairs", "5", "--feed", "250")
    assert [row.split()[0] for row in out.splitlines()[1:]] == ["500", "1,000", "1,500"]
    refused = subprocess.run([sys.executable, str(BENCH / "store_growth.py"), "--messages", "1000", "--window", "500",
                              "--feed", "300"], capture_output=True, text=True, timeout=60, cwd=BENCH)
    assert refused.returncode == 2 and "--window a multiple of it" in refused.stderr


def test_key_filter_times_both_calls_for_each_size():
    for codec in ("cython", "python"):
        out = run("key_filter.py", "--keys", "1000", "3000", "--codec", codec)
        lines = out.splitlines()
        assert [line.split()[0] for line in lines] == ["1,000", "3,000"]
        assert all(" add " in line and " in " in line and line.endswith(" ns") for line in lines)


def test_receive_frame_times_both_receivers_each_round():
    out = run("receive_frame.py", "--frames", "500", "--rounds", "2")
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["round 1", "round 2", "median"]
    assert all("python " in line and "cython " in line for line in lines)
    assert "compiled/twin " in lines[-1]
