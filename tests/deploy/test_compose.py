"""deploy/docker-compose.yml, brought up with podman-compose and proven: three edge nodes
behind HAProxy on TiDB, Redis, RocketMQ and S3, a client on each node, messages across
nodes, and one node's container killed: its client reconnects through HAProxy to another
node and goes on, and no acknowledged message is lost.

The third-party images are stand-ins (deploy/standins/build.sh: Debian packages, the
RocketMQ jars, the tidb-server binary the TiDB tests build, SeaweedFS in MinIO's place)
swapped in by the override deploy/standins/compose.yml, which changes nothing else it does
not have to; TiDB runs as one tidb-server on unistore instead of PD + TiKV + TiDB. The
services are started in the compose file's order, each stage waiting for the health check
the compose file gives it (run with `podman healthcheck run`: Podman before 4.6 cannot wait
for a `service_healthy` condition itself).

Slow (the first run builds the stand-ins and the node image: about 10 minutes; later runs
about 3), so it runs only under ``make test-deploy`` (IM_TEST_DEPLOY=1); skipped, saying
why, otherwise and without root or Podman."""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from containers import (IMAGE, PODMAN, ROOT, build_standins, free_port, http_get, node_image, podman, unavailable,
                        wait_http)
from edgeim.core_ext.protocol import Op
from edgeim.sdk import Client
from harness import next_event

_why = unavailable()
if _why is None and not os.environ.get("IM_TEST_DEPLOY"):
    _why = ("slow (builds images, runs 10 containers): run it with `make test-deploy` (IM_TEST_DEPLOY=1)")
pytestmark = pytest.mark.skipif(_why is not None, reason=f"the compose proof: {_why}")

EDGES = ("edge1", "edge2", "edge3")


class Compose:
    def __init__(self, project: str, env: dict[str, str]) -> None:
        self.project = project
        self.env = env
        tool = shutil.which("podman-compose", path=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
        assert tool, "podman-compose is in the test extra: pip install -e '.[test]'"
        self.base = [tool, "-p", project, "-f", str(ROOT / "deploy" / "docker-compose.yml"),
                     "-f", str(ROOT / "deploy" / "standins" / "compose.yml")]

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"podman-compose {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        return done

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def logs(self, service: str) -> str:
        done = podman("logs", "--tail", "40", self.container(service), check=False)
        return f"--- {service}:\n{done.stdout}{done.stderr}"

    def wait_healthy(self, *services: str, timeout: float = 240) -> None:
        """Until each service's compose health check passes (run by hand: see the docstring)."""
        deadline = time.monotonic() + timeout
        for service in services:
            while podman("healthcheck", "run", self.container(service), check=False, timeout=60).returncode != 0:
                state = podman("inspect", self.container(service), "--format", "{{.State.Status}}", check=False)
                if time.monotonic() > deadline:
                    raise AssertionError(f"{service} not healthy within {timeout:.0f} s ({state.stdout.strip()})\n"
                                         f"{self.logs(service)}")
                time.sleep(2)

    def http(self, service: str, method: str, url: str, headers: dict[str, str], body: bytes) -> bytes:
        """A request made from inside ``service``'s container; its status (a PUT) or body (a GET)."""
        script = ("import sys, json, urllib.request as u; h = json.loads(sys.argv[3]); d = sys.stdin.buffer.read(); "
                  "r = u.urlopen(u.Request(sys.argv[2], data=d if sys.argv[1] == 'PUT' else None, method=sys.argv[1], "
                  "headers=h), timeout=20); sys.stdout.buffer.write(str(r.status).encode() if sys.argv[1] == 'PUT' "
                  "else r.read())")
        done = subprocess.run([*PODMAN, "exec", "-i", self.container(service), "python", "-c", script, method, url,
                               json.dumps(headers)], input=body, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        return done.stdout

    def running(self, service: str) -> bool:
        state = podman("inspect", self.container(service), "--format", "{{.State.Running}}", check=False)
        return state.stdout.strip() == "true"

    def connections(self, service: str) -> int:
        """Logged-in WebSocket connections on a node, from its /metrics (asked from inside its
        container, with the metrics token the compose file gives it)."""
        script = ("import urllib.request as u; token = open('/run/secrets/metrics_token').read().strip(); "
                  "print(u.urlopen(u.Request('http://127.0.0.1:8766/metrics', "
                  "headers={'Authorization': 'Bearer ' + token})).read().decode())")
        # a node (re)starting has no metrics yet: no connections either
        done = podman("exec", self.container(service), "python", "-c", script, check=False)
        return sum(int(float(value)) for terminal, value in
                   re.findall(r'^edgeim_connections\{terminal="([^"]*)"\} (\S+)$', done.stdout, re.M) if terminal)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    build_standins()
    image = node_image()
    keys = tmp_path_factory.mktemp("secrets")
    (keys / "token_secret").write_text(secrets.token_hex(32))
    (keys / "metrics_token").write_text(secrets.token_hex(16))
    for key in keys.iterdir():
        key.chmod(0o444)  # uid 10001 (the nodes) and 65534 (Prometheus) read them
    lb_port = free_port()
    env = {**os.environ, "EDGEIM_SECRETS": str(keys), "EDGEIM_LB_PUBLISH": f"127.0.0.1:{lb_port}", "EDGEIM_IMAGE": image,
           "MINIO_ROOT_PASSWORD": secrets.token_hex(12)}
    compose = Compose(f"edgeimproof{uuid.uuid4().hex[:6]}", env)
    try:
        # the compose file's order: the backends, db-init, the nodes, HAProxy. Each stage
        # --no-recreate (what runs stays as it is) and --no-deps: the stages are the order,
        # and Podman 4.3 cannot start a container whose dependency (db-init) has exited
        compose("up", "-d", "redis", "namesrv", "tidb", "minio")
        compose.wait_healthy("redis", "namesrv")
        compose("up", "-d", "--no-recreate", "--no-deps", "broker")
        compose.wait_healthy("broker")
        compose("up", "-d", "--no-recreate", "--no-deps", "db-init")
        exit_code = podman("wait", compose.container("db-init"), timeout=360).stdout.strip()
        assert exit_code == "0", compose.logs("db-init") + compose.logs("tidb")
        compose("up", "-d", "--no-recreate", "--no-deps", *EDGES)
        try:
            compose.wait_healthy(*EDGES)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n" + "\n".join(compose.logs(s) for s in EDGES)) from None
        compose("up", "-d", "--no-recreate", "--no-deps", "lb", "prometheus")
        wait_http(f"http://127.0.0.1:{lb_port}/", timeout=60)
        # HAProxy checks /readyz every 2 s and needs 2 good checks: all three ready, then 5 s
        compose.wait_healthy(*EDGES)
        time.sleep(5)
        yield compose, lb_port
    finally:
        subprocess.run([*compose.base, "down", "-v", "-t", "5"], env=env, capture_output=True, timeout=300)


async def test_three_nodes_behind_haproxy_survive_a_killed_node(cluster):
    compose, lb_port = cluster
    # the web app through HAProxy, and nothing else of the nodes' HTTP port
    status, kind, body = http_get(f"http://127.0.0.1:{lb_port}/")
    assert status == 200 and kind.startswith("text/html")
    assert http_get(f"http://127.0.0.1:{lb_port}/metrics")[0] == 404

    url = f"ws://127.0.0.1:{lb_port}/ws"
    clients: dict[str, Client] = {}
    ids: dict[str, int] = {}
    node_of: dict[str, str] = {}
    try:
        # one client after another: HAProxy's leastconn puts each on the node with none
        # (LOGIN_OK names the node)
        for name in ("alice", "bob", "carol"):
            client = Client(url, auto_reconnect=True)
            await client.connect()
            clients[name] = client
            ids[name] = await client.register(name, f"{name}-password")
            node_of[name] = (await client.login(name, f"{name}-password")).node
        assert sorted(node_of.values()) == sorted(EDGES), node_of
        assert {edge: compose.connections(edge) for edge in EDGES} == dict.fromkeys(EDGES, 1)
        # friends (the product default: only friends message each other), across nodes
        for a, b in (("alice", "bob"), ("bob", "carol"), ("carol", "alice")):
            await clients[a].friend_request(ids[b])
            assert (await next_event(clients[b], Op.FRIEND_PUSH, 20)).event == "request"
            await clients[b].friend_accept(ids[a])
            assert (await next_event(clients[a], Op.FRIEND_PUSH, 20)).event == "accepted"

        # messages across nodes, each way round
        alice, bob, carol = clients["alice"], clients["bob"], clients["carol"]
        for sender, receiver in ((alice, "bob"), (bob, "carol"), (carol, "alice")):
            ack = await sender.send(ids[receiver], f"to {receiver}")
            pushed = await asyncio.wait_for(clients[receiver].pushes.get(), 20)
            assert (pushed.id, pushed.content) == (ack.msg_id, f"to {receiver}")

        # files on S3: alice's node grants the upload, bob's node the download, the bytes go
        # to and from the S3 server itself (from inside their nodes' containers: the URLs
        # name minio:9000, an address of the compose network)
        conv = f"p{min(ids['alice'], ids['bob'])}_{max(ids['alice'], ids['bob'])}"
        data = b"a file on S3\n" * 1000
        grant = await alice.file_upload_grant(conv, "notes.txt", len(data), "text/plain")
        assert grant.url.startswith("http://minio:9000/edgeim/")
        headers = {h.name: h.value for h in grant.headers}
        assert compose.http(node_of["alice"], "PUT", grant.url, headers, data) == b"200"
        download = await bob.file_download_grant(grant.key)
        assert download.size == len(data)
        assert compose.http(node_of["bob"], "GET", download.url, {}, b"") == data

        # Prometheus scrapes the three nodes' /metrics with the metrics token (deploy/prometheus.yml)
        deadline = time.monotonic() + 90
        while True:
            done = podman("exec", compose.container("prometheus"), "promtool", "query", "instant",
                          "http://127.0.0.1:9090", 'up{job="edgeim"}', check=False)
            if done.stdout.count("=> 1 @") == 3:
                break
            assert time.monotonic() < deadline, done.stdout + done.stderr
            await asyncio.sleep(3)

        # bob's node is killed (SIGKILL: no drain) while alice sends to him and he to carol
        killed = node_of["bob"]
        podman("kill", "--signal", "KILL", compose.container(killed))
        sent_to_bob = [await alice.send(ids["bob"], f"while down {i}") for i in range(10)]
        sent_by_bob = await asyncio.wait_for(
            asyncio.gather(*(bob.send(ids["carol"], f"from bob {i}") for i in range(10))), 90)
        assert bob.reconnects >= 1
        # he is on a node again, through HAProxy: the three clients are all connected (the
        # killed container may be back already: `restart: unless-stopped`)
        counts = {edge: compose.connections(edge) for edge in EDGES if compose.running(edge)}
        assert sum(counts.values()) == 3, counts

        # nothing acknowledged is lost: bob's client gets every message sent to him (pushed,
        # or put into its pushes by the catch-up after the reconnect) ...
        want_bob = {ack.msg_id for ack in sent_to_bob}
        got: set[int] = set()
        while not want_bob <= got:
            got.add((await asyncio.wait_for(bob.pushes.get(), 30)).id)
        # ... and the store has them, and every one bob sent, for a new device of each
        for name, want in (("bob", want_bob | {a.msg_id for a in sent_by_bob}),
                           ("carol", {a.msg_id for a in sent_by_bob})):
            device = Client(url, terminal="pc")
            await device.connect()
            try:
                await device.login(name, f"{name}-password")
                assert want <= {m.id for m in await device.sync_all()}
            finally:
                await device.close()
        # and live pushes reach him on his new node
        ack = await carol.send(ids["bob"], "after")
        while (pushed := await asyncio.wait_for(bob.pushes.get(), 20)).id != ack.msg_id:
            pass
        assert pushed.content == "after"
    finally:
        for client in clients.values():
            await client.close()
