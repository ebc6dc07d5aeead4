"""The alert rules and the dashboard against the real tools and a real node: promtool
accepts ops/alerts.yml; every series the rules and the dashboard use is one a node
serves; a real Prometheus on loopback scrapes a real node and finds its series."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from harness import ServeProcess, new_user
from servers import free_port

from edgeim.sdk import Client

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "ops" / "alerts.yml"
DASHBOARD = ROOT / "ops" / "grafana-dashboard.json"


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin")
    assert found, f"{name} is installed by `make install` (Debian package prometheus)"
    return found


def test_promtool_accepts_the_alert_rules():
    done = subprocess.run([_tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def _used_series(text: str) -> set[str]:
    names = set(re.findall(r"\b((?:edgeim|process)_[a-z_]+)", text))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


async def test_every_series_of_the_rules_and_dashboard_is_served(serve_factory):
    node = serve_factory()
    async with Client(node.url) as client:  # something in every family
        await new_user(client)
    served = urllib.request.urlopen(node.http_url + "/metrics", timeout=10).read().decode()
    families = set(re.findall(r"^# TYPE (\S+) (\S+)", served, re.M))
    names = {name for name, _ in families} | {name + "_total" for name, kind in families if kind == "counter"}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    missing = (_used_series(RULES.read_text()) | _used_series(exprs)) - names
    assert not missing, f"not served by a node: {sorted(missing)}"


@pytest.fixture
def prometheus(tmp_path: Path, serve_factory):
    node: ServeProcess = serve_factory()
    port = free_port()
    target = node.http_url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}']\n"
        f"scrape_configs:\n  - job_name: edgeim\n    static_configs:\n      - targets: ['{target}']\n")
    with open(tmp_path / "prometheus.log", "w") as log:
        proc = subprocess.Popen([_tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        yield f"http://127.0.0.1:{port}", node
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _query(base: str, query: str) -> list:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]["result"]
    except OSError:  # not listening yet
        return []


def test_a_real_prometheus_scrapes_a_node(prometheus):
    base, node = prometheus
    deadline = time.monotonic() + 60
    up = build = []
    while time.monotonic() < deadline and not (up and build):
        time.sleep(0.5)
        up = [r for r in _query(base, 'up{job="edgeim"}') if r["value"][1] == "1"]
        build = _query(base, "edgeim_build_info")
    assert up, "Prometheus never scraped the node"
    node_id = json.loads(urllib.request.urlopen(node.http_url + "/version", timeout=5).read())["node"]
    assert build[0]["metric"]["node"] == node_id
    assert _query(base, "process_resident_memory_bytes")
    assert _query(base, 'edgeim_backend_up{backend="store"}')[0]["value"][1] == "1"
    with urllib.request.urlopen(base + "/api/v1/rules", timeout=5) as response:
        groups = json.loads(response.read())["data"]["groups"]
    assert sum(len(g["rules"]) for g in groups) == 9
