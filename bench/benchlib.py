"""Helpers shared by the benches in bench/: starting and stopping the server processes,
the CPU and memory readings from /proc, the "other processes used CPU" flag, medians
and the results table. Not a bench itself; imported by bench/*.py (which run with bench/
on sys.path, so ``import benchlib`` works in them and in their spawned client processes).
"""
from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import platform
import re
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
NOISY_CPU_PCT = 20.0  # CPU % used by other processes above which a repetition is flagged
PASSWORD = "bench-password"

#: what every bench node gets: cheap password hashes (registration cost is not measured) and the
#: per-connection and per-account rate limits out of the way (setups create many groups)
NODE_ENV = {"IM_PASSWORD_MEMORY_KIB": "256", "IM_PASSWORD_TIME_COST": "1", "IM_LOGIN_RATE": "1000000",
            "IM_LOGIN_BURST": "1000000", "IM_LOGIN_BACKLOG": "100000", "IM_RATE": "1000000", "IM_BURST": "1000000",
            "IM_USER_SEND_RATE": "1000000", "IM_USER_SEND_BURST": "1000000",
            "IM_USER_SEND_BYTES_RATE": "1000000000", "IM_USER_SEND_BYTES_BURST": "1000000000",
            "IM_GROUP_CREATES_PER_HOUR": "1000000", "IM_CALL_INVITES_PER_MINUTE": "1000000",
            "IM_USER_FANOUT_RATE": "1000000000", "IM_USER_FANOUT_BURST": "1000000000",
            "IM_USER_FANOUT_BYTES_RATE": "1000000000000", "IM_USER_FANOUT_BYTES_BURST": "1000000000000",
            "IM_NODE_FANOUT_RATE": "1000000000", "IM_NODE_FANOUT_BYTES_RATE": "1000000000000",
            "IM_GROUP_TYPING_RATE": "1000000000", "IM_GROUP_JOIN_RATE": "1000000000",
            "IM_GROUP_JOIN_BURST": "1000000000", "IM_NODE_MAX_WRITE_BUFFER": "0",
            # the benches put strangers in big groups: every add is direct, as it was measured
            "IM_GROUP_ADD_DEFAULT": "anyone",
            "IM_VIEW_CHANGES_PER_MINUTE": "1000000000", "IM_PINS_PER_MINUTE": "1000000000"}


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process if the bench dies without cleaning up (kill -9)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def pinned(cpus: frozenset[int]) -> Callable[[], None]:
    """A ``preexec_fn``: ``die_with_parent``, and the child and every thread it starts kept
    on ``cpus`` (none: wherever the kernel puts them). ``im bench run --cpus`` pins every
    server so, for a like-for-like run."""
    def preexec() -> None:
        die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)
    return preexec


def raise_nofile() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


# -- /proc readings -------------------------------------------------------------------------------

def cpu_seconds(pid: int, thread: bool = False) -> float:
    """utime + stime of every thread of ``pid``, or of its main thread (the event loop)."""
    with open(f"/proc/{pid}/task/{pid}/stat" if thread else f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> list[int]:
    """The ``cpu`` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


def rss_peak_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


class CpuWindow:
    """CPU of the server (all threads and its main thread), and of the whole machine, over
    a window: ``start()``, then ``stop(client_cpu_s)`` returns the percentages (100 = one
    core). "other" is the machine's busy time minus the server's and the clients': other
    processes (and unattributed kernel time); above NOISY_CPU_PCT the window is flagged."""

    def __init__(self, server_pid: int, client_pids: Sequence[int] = (), other_server_pids: Sequence[int] = ()) -> None:
        self.pid = server_pid
        self.client_pids = list(client_pids)
        #: a scenario's further nodes: their CPU counts as the server's (the loop's is the first's)
        self.other_server_pids = list(other_server_pids)

    def _servers(self) -> float:
        return cpu_seconds(self.pid) + sum(cpu_seconds(pid) for pid in self.other_server_pids)

    def _clients(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.client_pids)

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.clients0 = self._clients()
        self.cpu0 = self._servers()
        self.each0 = [cpu_seconds(pid) for pid in [self.pid] + self.other_server_pids]
        self.loop0 = cpu_seconds(self.pid, thread=True)
        self.ticks0 = machine_ticks()

    def stop(self, client_cpu_s: float | None = None) -> dict[str, float]:
        """``client_cpu_s``: the clients' CPU seconds in the window as they measured it;
        None: read it from /proc for the client pids given."""
        elapsed = time.monotonic() - self.t0
        if client_cpu_s is None:
            client_cpu_s = self._clients() - self.clients0
        server = self._servers() - self.cpu0
        loop = cpu_seconds(self.pid, thread=True) - self.loop0
        ticks = [b - a for a, b in zip(self.ticks0, machine_ticks())]
        total = sum(ticks) or 1
        ncpu = os.cpu_count() or 1
        busy = (total - ticks[3] - ticks[4]) / total * 100 * ncpu
        each = [cpu_seconds(pid) - before for pid, before in zip([self.pid] + self.other_server_pids, self.each0)]
        return {
            "elapsed_s": elapsed,
            "server_cpu_s": server,
            "server_cpu_s_each": each,  # the server's, then each of other_server_pids'
            "server_cpu_pct": server / elapsed * 100,
            "server_loop_cpu_pct": loop / elapsed * 100,
            "server_loop_cpu_s": loop,
            "client_cpu_pct": client_cpu_s / elapsed * 100,
            "machine_busy_pct": busy,
            "other_cpu_pct": busy - (server + client_cpu_s) / elapsed * 100,
            # irq + softirq time is charged to no process: on loopback it is mostly the
            # bench's own packets (large replies make a lot of it); "other" includes it
            "irq_softirq_pct": (ticks[5] + ticks[6]) / total * 100 * ncpu,
            "steal_pct": ticks[7] / total * 100 * ncpu,
            "machine_iowait_pct": ticks[4] / total * 100 * ncpu,
        }


# -- processes ------------------------------------------------------------------------------------

def node_command(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "edgeim.cli", "serve", "--port", "0", "--data-dir", str(data_dir)]


def node_env(codec: str = "cython", **extra: str) -> dict[str, str]:
    """The environment of a bench node: NODE_ENV, ``extra`` (IM_* settings), and
    EDGEIM_NO_EXT=1 when ``codec`` is "python"."""
    env = dict(os.environ)
    env.update(NODE_ENV)
    env.update(extra)
    if codec == "python":
        env["EDGEIM_NO_EXT"] = "1"
    else:
        env.pop("EDGEIM_NO_EXT", None)
    return env


def start_server(cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
                 timeout: float = 30.0, cpus: frozenset[int] = frozenset()) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server whose first stdout line says ``listening on ws://HOST:PORT/ws`` (the
    node and the baselines do), on ``cpus`` if any (``pinned``); stderr goes to
    ``log_path``. Returns it and its URL."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=env, preexec_fn=pinned(cpus))
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n") and time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            chunk = os.read(proc.stdout.fileno(), 4096)
            line += chunk
            if not chunk:
                break
    match = re.search(rb"listening on (ws://\S+)", line)
    if not match:
        stop(proc)
        raise RuntimeError(f"server did not start: {cmd!r}: {line!r}\n{log_path.read_text()[-2000:]}")
    return proc, match.group(1).decode()


def server_codec(log_path: Path) -> str:
    found = re.search(r'"codec": "(\w+)"', log_path.read_text())
    return found.group(1) if found else "?"


def stop(proc: subprocess.Popen[bytes] | multiprocessing.Process, timeout: float = 15.0) -> None:
    """SIGTERM by pid, then SIGKILL if it lingers."""
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
    else:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join()


def start_clients(target: Any, specs: Sequence[dict[str, Any]]
                  ) -> list[tuple[multiprocessing.Process, multiprocessing.connection.Connection]]:
    """One spawned process per spec, running ``target(conn, spec)``; returns (process, pipe end)."""
    ctx = multiprocessing.get_context("spawn")
    clients = []
    for spec in specs:
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child_end, spec), daemon=True)
        proc.start()
        child_end.close()
        clients.append((proc, parent_end))
    return clients


def stop_clients(clients: list[tuple[multiprocessing.Process, multiprocessing.connection.Connection]]) -> None:
    for proc, conn in clients:
        stop(proc)
        conn.close()


def receive(conn: multiprocessing.connection.Connection, expect: str, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(f"client process: no {expect!r} within {timeout:.0f} s")
    tag, payload = conn.recv()
    if tag != expect:
        raise RuntimeError(f"client process failed: {payload}")
    return payload


def run_client(conn: multiprocessing.connection.Connection, main: Any, spec: dict[str, Any]) -> None:
    """Body of a client process: run the coroutine function ``main(conn, spec)`` on uvloop
    and send its return value as ("result", value), or ("error", text) when it raises."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    raise_nofile()
    import uvloop
    try:
        result = uvloop.run(main(conn, spec))
    except BaseException as exc:  # report, so the parent does not wait for nothing
        import traceback
        where = "".join(traceback.format_exception(exc)[-4:])
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{where}"))
        raise
    conn.send(("result", result))


# -- statistics and report --------------------------------------------------------------------------

def percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        found = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = found.group(1).strip() if found else "?"
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def table(rows: Sequence[tuple[str, Any, Any, bool, str]], columns: tuple[str, str] = ("edgeim", "baseline"),
          label_width: int = 40) -> str:
    """The results table: rows of (label, node value, baseline value, ratio?, format); the
    ratio column is node / baseline where it means something."""
    out = [f"{'':{label_width}}{columns[0]:>12}{columns[1]:>12}{'ratio':>8}"]
    for label, a, b, has_ratio, fmt in rows:
        line = f"{label:{label_width}}"
        line += f"{fmt.format(a) if a is not None else '-':>12}"
        line += f"{fmt.format(b) if b is not None else '-':>12}"
        line += f"{a / b:>8.2f}" if has_ratio and a is not None and b else f"{'-':>8}"
        out.append(line)
    return "\n".join(out)


def other_processes_pct(window: dict[str, Any]) -> float:
    """CPU % of other processes in a window, roughly: busy minus the server, the clients and
    the irq/softirq time (on loopback mostly the bench's own traffic). Part of the softirq
    time is also in the processes' system time, so this underestimates; 0 at least."""
    return max(0.0, window["other_cpu_pct"] - window.get("irq_softirq_pct", 0.0))


def noisy(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Warnings for the repetitions in which other processes used much CPU."""
    return [f"{kind} rep {i + 1}: other processes used {other_processes_pct(r):.0f} % CPU during the window"
            f" (busy minus ours: {r['other_cpu_pct']:.0f} %, of which irq/softirq {r.get('irq_softirq_pct', 0):.0f} %)"
            for kind, rs in runs.items() for i, r in enumerate(rs) if other_processes_pct(r) > NOISY_CPU_PCT]


def sigterm_unwinds() -> None:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop every process we started."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def add_common_args(parser: argparse.ArgumentParser, reps: int = 3) -> None:
    parser.add_argument("--reps", type=int, default=reps, help=f"repetitions; medians are printed (default {reps})")
    parser.add_argument("--codec", choices=["cython", "python"], default="cython",
                        help="server codec; python runs the node with EDGEIM_NO_EXT=1")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")


Clients = list[tuple[multiprocessing.Process, multiprocessing.connection.Connection]]


def call(clients: Clients, name: str, args: Sequence[tuple[Any, ...]] | tuple[Any, ...] = (),
         timeout: float = 600.0, per_client: bool = False) -> list[Any]:
    """Send command ``name`` to every client process (bench/benchclient.serve_commands) and
    wait for all answers. ``args`` is one tuple for all, or one per client with per_client."""
    for i, (_, conn) in enumerate(clients):
        conn.send((name, tuple(args[i]) if per_client else tuple(args)))  # type: ignore[arg-type]
    return [receive(conn, "ok", timeout) for _, conn in clients]
