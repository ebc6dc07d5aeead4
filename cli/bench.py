"""``im bench``: run bench scenarios, list them, report on a JTL, the Centrifugo peer and JMeter.

Every failure the user can cause (a bad scenario file, a missing JTL, a server that does
not start) is a message on stderr and exit code 2 (bad input) or 1 (the run failed).
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape  # help is rich markup: "[setup]" would be read as a style tag

from ..ops.config import ConfigError, cpu_list

bench_app = typer.Typer(help="Benchmarks: scenarios in TOML, load from several processes, JMeter's JTL.",
                        no_args_is_help=True, add_completion=False)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"im bench: {message}", err=True)
    raise typer.Exit(code)


@bench_app.command("list")
def list_() -> None:
    """The shipped scenarios (run one with `im bench run NAME`)."""
    from ..bench.scenario import ScenarioError, load_scenario, shipped
    for name, path in shipped().items():
        try:
            s = load_scenario(path)
            typer.echo(f"{name:14} {s.users:>7,} users {s.processes:>2} procs  {s.description}")
        except ScenarioError as exc:
            typer.echo(f"{name:14} broken: {exc}")


@bench_app.command("run")
def run(
    scenario: str = typer.Argument(..., help="A shipped scenario's name (im bench list) or a TOML file."),
    target: Optional[List[str]] = typer.Option(None, "--target", help="ws:// URL of a running node (repeat for a cluster); default: the bench starts the scenario's nodes."),
    out: Optional[Path] = typer.Option(None, "--out", help=escape("Directory for the JTLs and reports [default bench-results/NAME-TIME].")),
    users: Optional[int] = typer.Option(None, "--users", help="Scale the scenario to this many users in total."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of every timed thread group."),
    processes: Optional[int] = typer.Option(None, "--processes", help="Load-generator processes."),
    group_size: Optional[int] = typer.Option(None, "--group-size", help=escape("Members per group of [setup].")),
    ramp_up: Optional[float] = typer.Option(None, "--ramp-up", help="Seconds over which every thread group's users start."),
    peer: bool = typer.Option(False, "--peer", help="Also run the scenario against Centrifugo (built by `im bench centrifugo --build`)."),
    peer_durable: bool = typer.Option(False, "--peer-durable", help="Also run the scenario against Centrifugo on a"
                                      " Redis that fsyncs every write before it answers (needs redis-server)."),
    no_ceiling: bool = typer.Option(False, "--no-ceiling", help="Skip the bare relay (bench/baseline_relay.py: a bare"
                                    " picows server, the baseline)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress line."),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="Run every server the bench starts (node, bare relay,"
                                       " Centrifugo) on these CPUs only, a CPU list such as 1 or 2-3; the load"
                                       " generator runs wherever the kernel puts it."),
) -> None:
    """Run a scenario against edgeim, the bare relay and optionally Centrifugo, in one run."""
    from ..bench import runner
    from ..bench.scenario import ScenarioError, load_scenario, resolve
    try:
        loaded = load_scenario(resolve(scenario)).scaled(users, duration, processes, group_size, ramp_up)
        if target and not all(t.startswith(("ws://", "wss://")) for t in target):
            raise ScenarioError("--target takes ws:// or wss:// URLs")
        pinned = cpu_list(cpus, "--cpus") if cpus is not None else frozenset()
    except (ScenarioError, ConfigError) as exc:
        _fail(str(exc))
    out_dir = out or runner.default_out(loaded)

    def say(text: str) -> None:
        if not quiet:
            sys.stderr.write(text)
            sys.stderr.flush()

    from ..bench.benchlib import sigterm_unwinds
    sigterm_unwinds()  # SIGTERM unwinds like Ctrl-C: the finally blocks stop what the run started
    try:
        result = runner.run(loaded, out_dir, urls=list(target or []), peer=peer, ceiling=not no_ceiling,
                            progress=say, command="im " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                            cpus=pinned, durable_peer=peer_durable)
    except KeyboardInterrupt:
        _fail("interrupted; every process the run started was stopped", 130)
    except ScenarioError as exc:
        _fail(str(exc))
    except (runner.BenchError, RuntimeError, OSError) as exc:
        _fail(f"run failed: {exc}", 1)
    typer.echo(result["text"])
    typer.echo(f"\nresults in {out_dir}: edgeim.jtl (jmeter -g), report.html, summary.txt, results.json")


@bench_app.command("report")
def report(
    jtl_file: Path = typer.Argument(..., help="A JTL (JMeter CSV results)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write report.html here (a directory)."),
    jmeter: bool = typer.Option(False, "--jmeter", help="Also run JMeter's report generator into OUT/jmeter (fetches JMeter once)."),
) -> None:
    """The per-sampler summary of a JTL; with --out an HTML report, with --jmeter JMeter's dashboard."""
    from ..bench import jtl
    try:
        samples = list(jtl.read_jtl(jtl_file))
    except (OSError, ValueError, IndexError) as exc:
        _fail(f"{jtl_file}: cannot read as a JTL: {exc}")
    if not samples:
        _fail(f"{jtl_file}: no samples")
    typer.echo(jtl.summary_table(jtl.summarize(samples)))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        jtl.html_report(out / "report.html", f"im bench report: {jtl_file.name}", {"edgeim": samples}, "", [])
        typer.echo(f"wrote {out / 'report.html'}")
        if jmeter:
            from ..bench import jmeter_runner as jm
            try:
                folder = jm.dashboard(jtl_file, out / "jmeter")
            except RuntimeError as exc:
                _fail(str(exc), 1)
            typer.echo(f"JMeter dashboard: {folder / 'index.html'}")


@bench_app.command("doc")
def doc(
    runs: List[Path] = typer.Argument(..., help="Folders `im bench run` wrote (several runs of a scenario are medianed)."),
    write: Optional[Path] = typer.Option(None, "--write", help="Replace the generated part of this document "
                                         "(docs/benchmarks.md) instead of printing it."),
) -> None:
    """The harness figures for docs/benchmarks.md, from run folders: per scenario, every
    run's headline figure and the median run's table with its command."""
    from ..bench import docs
    try:
        text = docs.section([docs.load(folder) for folder in runs])
    except ValueError as exc:
        _fail(str(exc))
    if write is None:
        typer.echo(text, nl=False)
        return
    try:
        write.write_text(docs.replace_section(write.read_text(encoding="utf-8"), text), encoding="utf-8")
    except (OSError, ValueError) as exc:
        _fail(f"{write}: {exc}")
    typer.echo(f"wrote the harness figures of {len(runs)} run(s) into {write}")


@bench_app.command("centrifugo")
def centrifugo(
    build: bool = typer.Option(False, "--build", help="Build Centrifugo v6.9.1 with go install (~8 min the first time)."),
    users: Optional[int] = typer.Option(None, "--users", help="Scale send_1to1 to this many users."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of the timed part."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory."),
) -> None:
    """The peer: build Centrifugo, and/or run send_1to1 against edgeim, the bare relay and Centrifugo."""
    from ..bench import peer
    if build:
        typer.echo(f"building Centrifugo {peer.VERSION} into {peer.home()} ...", err=True)
        try:
            typer.echo(str(peer.build(sys.stderr)))
        except RuntimeError as exc:
            _fail(str(exc), 1)
        if users is None and duration is None and out is None:
            return
    run("send_1to1", target=None, out=out, users=users, duration=duration, processes=None, group_size=None,
        ramp_up=None, peer=True, peer_durable=False, no_ceiling=False, quiet=False, cpus=None)


@bench_app.command("jmeter")
def jmeter(
    out: Path = typer.Option(Path("bench-results/jmeter"), "--out", help="Where the JTL and JMeter's dashboard go."),
    users: int = typer.Option(20, "--users", help="JMeter threads (each logs in and sends to its neighbour)."),
    loops: int = typer.Option(200, "--loops", help="SENDs per thread."),
) -> None:
    """Run the real JMeter plan bench/jmeter/edgeim.jmx against a node the bench starts."""
    from ..bench import jmeter_runner as jm
    try:
        jtl_path = jm.run_plan(out, users, loops, log=sys.stderr)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        _fail(str(exc), 1)
    typer.echo(f"JMeter wrote {jtl_path}; dashboard in {out / 'dashboard'}")
