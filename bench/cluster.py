"""A cluster on this machine for ``im bench``: MariaDB, Redis and a RocketMQ name server and
broker (started as the tests start them: loopback, free ports, private dirs under a temp
dir), then N ``im serve`` nodes on them. Prints the nodes' URLs, runs COMMAND with them in
``$TARGETS`` (``--target URL`` once per node) if one is given, then stops everything.

    python bench/cluster.py --nodes 3 -- sh -c 'im bench run send_1to1 $TARGETS'

Needs a checkout (the servers come from tests/servers.py) and what ``make install`` puts
on the machine (mariadbd, redis-server, java and the RocketMQ jars).
"""
from __future__ import annotations

import argparse
import os
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
            return subprocess.run(command, env=env).returncode
        finally:
            for proc in procs:
                benchlib.stop(proc)
            if args.logs:
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in base.glob("node*.log"):
                    shutil.copy(log, args.logs / log.name)
            for server in reversed(started):
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
