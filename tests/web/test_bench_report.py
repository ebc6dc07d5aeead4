"""`im bench`'s HTML report (bench/jtl.py) as a reader sees it: opened in Chromium, with its
side-by-side text, one summary table per run and, per label, a throughput and a latency
chart holding a line for every run inside the chart's frame. A screenshot is kept under
<repo>/test-artifacts/web/."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from edgeim.bench import jtl

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = Path("/usr/bin/chromium")


def samples(rate: int, latency_ms: float, seconds: int = 20) -> list[jtl.Sample]:
    start = 1_795_000_000_000
    return [jtl.Sample(start + s * 1000 + i * (1000 // rate), latency_ms + (i % 7), label, True, 120, 80)
            for s in range(seconds) for i in range(rate) for label in ("send", "sync")]


def test_the_report_renders_tables_and_a_line_per_run_in_each_chart(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    report = tmp_path / "report.html"
    jtl.html_report(report, "im bench: demo", {"edgeim": samples(40, 12.0), "bare relay": samples(90, 4.0)},
                    "send /s  edgeim 40  bare relay 90  ratio 0.44", ["note: a synthetic run"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "bench-report.png"

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        headings = page.locator("h2").all_inner_texts()
        rows = {kind: page.locator(f"h2:has-text('{kind}') + table tr").all_inner_texts() for kind in ("edgeim", "bare relay")}
        charts = page.locator("svg")
        titles = [charts.nth(i).locator("text").first.text_content() for i in range(charts.count())]
        escaped = []  # polylines drawn outside their chart's frame
        for i in range(charts.count()):
            frame = charts.nth(i).bounding_box()
            for line in charts.nth(i).locator("polyline").all():
                box = line.bounding_box()
                if box["x"] < frame["x"] or box["y"] < frame["y"] - 1 \
                        or box["x"] + box["width"] > frame["x"] + frame["width"] \
                        or box["y"] + box["height"] > frame["y"] + frame["height"] + 1:
                    escaped.append((titles[i], box))
        lines_per_chart = [charts.nth(i).locator("polyline").count() for i in range(charts.count())]
        side_by_side = page.locator("pre").first.inner_text()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    print(f"\nbench report screenshot: {shot}")

    assert errors == []
    assert {"Side by side", "edgeim", "bare relay", "Over time"} <= set(headings)
    assert "ratio 0.44" in side_by_side
    assert any(r.startswith("send\t800\t40") for r in rows["edgeim"]), rows["edgeim"]
    assert any(r.startswith("send\t1,800\t90") for r in rows["bare relay"]), rows["bare relay"]
    assert sorted(titles) == ["send: latency", "send: throughput", "sync: latency", "sync: throughput"]
    # throughput: one line per run; latency: a median and a p90 line per run
    assert sorted(lines_per_chart) == [2, 2, 4, 4]
    assert escaped == []
