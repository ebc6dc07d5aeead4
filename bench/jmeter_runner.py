"""Real Apache JMeter beside the harness: assembled from its Maven jars into a cache dir by
bench/jmeter/fetch-jmeter.sh (once, ~60 MB, ~45 s), then run in non-GUI mode.

- ``dashboard(jtl, out)``: JMeter's report generator (``jmeter -g JTL -o OUT``) on a JTL;
- ``run_plan(out, users, loops)``: start a node, register the plan's users (not timed), run
  bench/jmeter/edgeim.jmx with the WebSocket samplers plugin, and its dashboard.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import benchlib

PLAN_DIR = Path(__file__).resolve().parent / "jmeter"
VERSION = "5.6.3"


def home() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get("EDGEIM_JMETER_HOME") or base / "edgeim" / f"jmeter-{VERSION}")


def cached() -> bool:
    return (home() / ".complete").exists()


def ensure(log: Any = None) -> Path:
    """JMeter's home, assembling it first if it is not cached; RuntimeError if it cannot."""
    if cached():
        return home()
    done = subprocess.run(["sh", str(PLAN_DIR / "fetch-jmeter.sh")], stdout=subprocess.PIPE, stderr=log, text=True)
    if done.returncode != 0 or not cached():
        raise RuntimeError(f"assembling JMeter failed (bench/jmeter/fetch-jmeter.sh exited {done.returncode})")
    return home()


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("JMeter needs java (Debian: apt-get install -y default-jre-headless)")
    return java


def dashboard(jtl: Path, out: Path, log: Any = None) -> Path:
    """Run JMeter's report generator on ``jtl`` into ``out`` (replaced); returns ``out``."""
    jm = ensure(log)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the report generator is a short batch job: the client compiler and the serial collector
    # start it about three times faster than the JVM's defaults
    done = subprocess.run([_java(), "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-jar",
                           str(jm / "bin" / "ApacheJMeter.jar"), "-g", str(jtl), "-o", str(out),
                           "-j", str(out.parent / f"{out.name}-jmeter.log"),
                           # percentiles over every sample, as ours: by default JMeter takes them
                           # over the last 20,000 only (a 114K-sample run's median read 79 ms, not 64)
                           "-Jjmeter.reportgenerator.statistic_window=-1"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if done.returncode != 0 or not (out / "index.html").exists():
        raise RuntimeError(f"JMeter's report generator failed (exit {done.returncode}): {done.stdout[-1500:]}")
    return out


def run_plan(out: Path, users: int, loops: int, log: Any = None) -> Path:
    """Start a node, register ``users`` senders and as many offline peers, run edgeim.jmx
    with JMeter, then its dashboard into OUT/dashboard; returns the JTL JMeter wrote."""
    from .runner import setup_main
    jm = ensure(log)
    out.mkdir(parents=True, exist_ok=True)
    jtl = out / "jmeter.jtl"
    if jtl.exists():
        jtl.unlink()
    with tempfile.TemporaryDirectory(prefix="edgeim-jmeter-") as tmp_name:
        tmp = Path(tmp_name)
        env = benchlib.node_env("cython", IM_STRANGERS_MAY_SEND="1", IM_AUTH_TIMEOUT="120")
        node, url = benchlib.start_server(benchlib.node_command(tmp / "data"), tmp / "node.log", env, 60.0)
        try:
            names = [f"jm{i:05d}" for i in range(2 * users)]
            spec_users = [{"index": i, "name": n, "url": url, "peer": i} for i, n in enumerate(names)]
            setup = benchlib.start_clients(setup_main, [{"users": spec_users, "friends": 0, "messages": 0,
                                                         "groups": []}])
            try:
                ids = benchlib.receive(setup[0][1], "result", 300.0)["ids"]
            finally:
                benchlib.stop_clients(setup)
            csv = out / "users.csv"
            # sender i sends to peer users + i, who never connects
            csv.write_text("".join(f"{names[i]},{ids[users + i]}\n" for i in range(users)))
            host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            cmd = [_java(), "-jar", str(jm / "bin" / "ApacheJMeter.jar"), "-n", "-t", str(PLAN_DIR / "edgeim.jmx"),
                   "-l", str(jtl), "-j", str(out / "jmeter.log"), f"-Jhost={host}", f"-Jport={port}",
                   f"-Jusers={users}", f"-Jloops={loops}", f"-Jusers_csv={csv}", f"-Jpassword={benchlib.PASSWORD}"]
            done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1800)
            (out / "jmeter-stdout.txt").write_text(done.stdout)
            if done.returncode != 0 or not jtl.exists():
                raise RuntimeError(f"JMeter failed (exit {done.returncode}): {done.stdout[-1500:]}")
        finally:
            benchlib.stop(node)
    dashboard(jtl, out / "dashboard", log)
    return jtl


if __name__ == "__main__":  # pragma: no cover - `python -m edgeim.bench.jmeter_runner` prints JMeter's home
    print(ensure(sys.stderr))
