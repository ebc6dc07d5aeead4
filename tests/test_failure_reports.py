"""A failed test's report carries the tails of the node logs it kept (tests/conftest.py's
hook, ``harness.log_tails``): a CI run keeps the report, not pytest's tmp dirs."""
from __future__ import annotations

from pathlib import Path

from harness import log_tails

pytest_plugins = ["pytester"]


def test_log_tails_gives_the_last_lines_of_each_log_cut_to_width(tmp_path: Path):
    (tmp_path / "b.log").write_text("\n".join(f"b{i}" for i in range(100)) + "\n")
    (tmp_path / "a.log").write_text("x" * 1000 + "\nshort\n")
    (tmp_path / "notes.txt").write_text("not a log")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.log").write_text("one level down: not read")
    tails = log_tails(tmp_path, lines=3, width=10)
    assert tails == [("node log a.log, last 2 lines", "xxxxxxxxxx\nshort"),
                     ("node log b.log, last 3 lines", "b97\nb98\nb99")]
    assert log_tails(tmp_path / "sub") == [("node log c.log, last 1 lines", "one level down: not read")]


def test_a_failed_tests_report_shows_its_node_logs_and_a_passed_one_does_not(pytester):
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.syspathinsert(Path(__file__).parent)
    pytester.makepyfile(test_inner='''
        def test_fails(tmp_path):
            (tmp_path / "a.log").write_text("\\n".join(f"node line {i}" for i in range(100)))
            assert False, "on purpose"

        def test_passes(tmp_path):
            (tmp_path / "b.log").write_text("quiet node")
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "node log a.log, last 40 lines" in out and "node line 99" in out and "node line 60" in out
    assert "node line 59" not in out and "quiet node" not in out
