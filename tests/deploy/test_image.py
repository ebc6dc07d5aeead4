"""The node image from the repository's Dockerfile, built and run with Podman: /healthz and
the image's own HEALTHCHECK, the web app at /, a WebSocket login with the Python SDK through
the published port, a non-root process, and SIGTERM: its sessions closed with 1001, exit
code 0, and what it accepted still there when a new container starts on the same volume.

Built on the stand-in base images of deploy/standins/build.sh (no image registry needed);
the image is built once (about 3 minutes) and reused while the build context is unchanged.
Skipped, saying why, without root or Podman."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from containers import IMAGE, LIMITS, free_port, http_get, node_image, podman, unavailable, wait_http
from edgeim.sdk import Client

_why = unavailable()
pytestmark = pytest.mark.skipif(_why is not None, reason=f"the container tests: {_why}")


@pytest.fixture(scope="module")
def image() -> str:
    return node_image()


@pytest.fixture
def volume():
    name = f"edgeim-test-{uuid.uuid4().hex[:8]}"
    podman("volume", "create", name)
    yield name
    podman("volume", "rm", "-f", name, check=False)


class Container:
    """One `podman run -d` of the node image with its two ports published on loopback."""

    def __init__(self, image: str, volume: str) -> None:
        self.name = f"edgeim-test-{uuid.uuid4().hex[:8]}"
        self.ws_port, self.http_port = free_port(), free_port()
        podman("run", "-d", "--name", self.name, *LIMITS, "-p", f"127.0.0.1:{self.ws_port}:8765",
               "-p", f"127.0.0.1:{self.http_port}:8766", "-v", f"{volume}:/data", image)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def running(self) -> bool:
        state = podman("inspect", self.name, "--format", "{{.State.Running}}", check=False)
        return state.stdout.strip() == "true"

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-3000:]

    def wait_ready(self) -> None:
        try:
            wait_http(self.http("/healthz"), alive=self.running)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def remove(self) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)


@pytest.fixture
def containers(image, volume):
    made: list[Container] = []

    def run() -> Container:
        made.append(Container(image, volume))
        return made[-1]
    yield run
    for container in made:
        container.remove()


async def test_the_image_serves_logs_in_and_drains_on_sigterm(containers):
    node = containers()
    node.wait_ready()
    # the image's HEALTHCHECK command itself (kept because the build uses the docker format)
    assert podman("healthcheck", "run", node.name, check=False).returncode == 0, node.logs()
    assert podman("exec", node.name, "id", "-u").stdout.strip() == "10001"

    status, kind, body = http_get(node.http("/"))
    assert status == 200 and kind.startswith("text/html"), (status, kind)
    assert b"<script" in body
    status, kind, body = http_get(node.http("/web-config.json"))
    assert status == 200 and b"ws" in body

    alice, bob = Client(node.ws_url), Client(node.ws_url)
    await alice.connect()
    await bob.connect()
    alice_id = await alice.register("alice", "alice-password")
    bob_id = await bob.register("bob", "bob-password")
    await alice.login("alice", "alice-password")
    await bob.login("bob", "bob-password")
    await alice.friend_request(bob_id)  # the product default: only friends message each other
    await bob.friend_accept(alice_id)
    ack = await alice.send(bob_id, "hello from the image")
    pushed = await asyncio.wait_for(bob.pushes.get(), 20)
    assert pushed.id == ack.msg_id and pushed.content == "hello from the image"

    # SIGTERM (the image's STOPSIGNAL): the sessions are closed with 1001, the exit code is 0
    podman("kill", "--signal", "TERM", node.name)
    codes = await asyncio.wait_for(asyncio.gather(alice.wait_closed(), bob.wait_closed()), 40)
    assert codes == [1001, 1001]
    exit_code = podman("wait", node.name, timeout=60).stdout.strip()
    assert exit_code == "0", node.logs()
    assert "Traceback" not in node.logs()

    # what it accepted is on the volume: a new container on it has the account and the message
    again = containers()
    again.wait_ready()
    client = Client(again.ws_url)
    await client.connect()
    try:
        await client.login("bob", "bob-password")
        messages = await client.sync_all()
        assert [m.id for m in messages] == [ack.msg_id]
    finally:
        await client.close()
        await alice.close()
        await bob.close()
