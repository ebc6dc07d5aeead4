"""A cluster on this machine for ``im bench``: MariaDB, Redis and a RocketMQ name server and
broker (started as the tests start them: loopback, free ports, private dirs under a temp
dir), then N ``im serve`` nodes on them. Prints the nodes' URLs, runs COMMAND with them in
``$TARGETS`` (``--target URL`` once per node) if one is given, then stops everything.

    python bench/cluster.py --nodes 3 -- sh -c 'im bench run send_1to1 $TARGETS'

With ``--cpu``, it prints the CPU seconds each part (the nodes, mariadbd, redis-server,
the broker, the name server, the command's own processes) used while COMMAND ran: this
process's descendants, read from /proc before and after (Linux).

Needs a checkout (the servers come from tests/servers.py) and what ``make install`` puts
on the machine (mariadbd, redis-server, java and the RocketMQ jars).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

try:
    from . import benchlib
except ImportError:  # run as a script
    import benchlib  # type: ignore[no-redef]

_TESTS = Path(__file__).resolve().parent.parent / "tests"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="IM_X=V", help="a setting of every node")
    parser.add_argument("--logs", type=Path, help="keep the nodes' logs here")
    parser.add_argument("--cpu", action="store_true", help="print each part's CPU seconds while COMMAND ran")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="run with $TARGETS set, then stop")
    args = parser.parse_args()
    if not (_TESTS / "servers.py").exists():
        parser.error("needs a checkout of edgeim: the servers come from tests/servers.py")
    sys.path.insert(0, str(_TESTS))
    import servers  # noqa: PLC0415  (tests/servers.py: how the test suite starts them)

    with tempfile.TemporaryDirectory(prefix="edgeim-cluster-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)  # mariadbd runs as `mysql` (when we are root) and must reach its dir
        started: list = []
        procs: list[subprocess.Popen[bytes]] = []
        try:
            mysql, redis, mq = servers.MariaDB(base / "mysql"), servers.RedisServer(base / "redis"), servers.RocketMQ(base / "mq")
            for server in (mysql, redis, mq):
                server.start()
                started.append(server)
            settings = dict(
                IM_STORE=mysql.url(mysql.new_database()), IM_ROUTES=f"{redis.url}?prefix={redis.new_prefix()}",
                IM_BUS=f"rocketmq://{mq.namesrv}", IM_TOKEN_SECRET="bench-" + uuid.uuid4().hex,
                IM_STRANGERS_MAY_SEND="1", IM_GROUP_MAX_MEMBERS="20000", IM_AUTH_TIMEOUT="600", IM_IDLE_TIMEOUT="600",
            )
            settings.update(item.split("=", 1) for item in args.env)
            urls = []
            for n in range(args.nodes):
                env = benchlib.node_env("cython", IM_NODE_ID=f"bench-{n}", **settings)
                proc, url = benchlib.start_server(benchlib.node_command(base / f"node{n}"), base / f"node{n}.log", env, 60.0)
                procs.append(proc)
                urls.append(url)
            print("nodes:", " ".join(urls), flush=True)
            command = [c for c in args.command if c != "--"]
            if not command:
                return 0
            env = dict(os.environ, TARGETS=" ".join(f"--target {u}" for u in urls))
            before = _cpu_by_part() if args.cpu else {}
            returncode = subprocess.run(command, env=env).returncode
            if args.cpu:
                after = _cpu_by_part()
                used = {part: seconds - before.get(part, 0.0) for part, seconds in after.items()}
                print("CPU seconds while the command ran:")
                for part, seconds in sorted(used.items(), key=lambda item: -item[1]):
                    print(f"  {part:<22}{seconds:9.2f}")
            return returncode
        finally:
            for proc in procs:
                benchlib.stop(proc)
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in base.glob("node*.log"):
                    shutil.copy(log, args.logs / log.name)
            for server in reversed(started):
                server.stop()


#: (a substring of a process's command line, its part); the first that matches names it
_PARTS = (("edgeim.cli serve", "nodes"), ("mariadbd", "mariadbd"), ("redis-server", "redis-server"),
          ("BrokerStartup", "rocketmq broker"), ("NamesrvStartup", "rocketmq name server"))


def _cpu_by_part() -> dict[str, float]:
    """CPU seconds (user + system) so far of this process's descendants, by part, and
    of the children it waited for ("command": the command, whose processes have ended
    when it returns)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, tuple[float, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended meanwhile
            continue
        pid = int(entry)
        parent[pid] = int(stat[1])
        used[pid] = ((int(stat[11]) + int(stat[12])) / ticks, cmdline)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    me, parts = os.getpid(), {"command": waited.ru_utime + waited.ru_stime}
    for pid, (seconds, cmdline) in used.items():
        ancestor = parent.get(pid)
        while ancestor not in (None, 0, 1, me):
            ancestor = parent.get(ancestor)
        part = next((name for key, name in _PARTS if key in cmdline), None)
        if ancestor == me and part is not None:
            parts[part] = parts.get(part, 0.0) + seconds
    return parts


if __name__ == "__main__":
    sys.exit(main())
