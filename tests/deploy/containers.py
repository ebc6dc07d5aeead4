"""Podman for the deploy tests: whether it can run here, the stand-in images
(deploy/standins/build.sh) and the node image built from the repository's Dockerfile,
built once and reused while its inputs do not change.

Podman is run with runc (crun refuses some kernels' hybrid cgroups) and with open-file and
process limits at or below the machine's hard ones; builds get the host's network, CA
bundle and pip settings so that pip and npm inside them reach their registries."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDINS = ROOT / "deploy" / "standins"
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
#: the node image the tests build (not `edgeim:local`, a user's own build: this one is
#: built on the stand-in base images)
IMAGE = "localhost/edgeim:standins"
_LABEL = "org.edgeim.inputs"


def unavailable() -> str | None:
    """Why the container tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root (podman with runc, and debootstrap for the stand-in base images)"
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (Debian: apt-get install -y podman runc debootstrap)"
    try:
        subprocess.run([*PODMAN, "info"], check=True, capture_output=True, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"podman does not run here: {exc}"
    return None


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], check=check, capture_output=True, text=True, timeout=timeout)


def build_standins(*names: str) -> None:
    """The stand-in images ``names`` (all when none), each built only when missing."""
    done = subprocess.run(["bash", str(STANDINS / "build.sh"), *names], capture_output=True, text=True,
                          timeout=3600)
    assert done.returncode == 0, f"deploy/standins/build.sh {' '.join(names)} failed:\n{done.stderr[-3000:]}"


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pattern in patterns:
        pattern = pattern.removeprefix("**/")
        if any(fnmatch("/".join(parts[:i]), pattern) or fnmatch(parts[i - 1], pattern)
               for i in range(1, len(parts) + 1)):
            return True
    return False


def inputs_digest() -> str:
    """A digest of the build context as .dockerignore leaves it (paths and contents)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not _ignored(rel_dir + d, patterns))
        for name in sorted(filenames):
            rel = rel_dir + name
            path = Path(dirpath) / name
            if _ignored(rel, patterns) or not path.is_file():
                continue
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def node_image() -> str:
    """The node image from the repository's Dockerfile on the stand-in base images; rebuilt
    only when the build context changed since it was built (a label holds its digest)."""
    build_standins("base")
    digest = inputs_digest()
    have = podman("image", "inspect", IMAGE, "--format", "{{json .Labels}}", check=False)
    if have.returncode == 0 and (json.loads(have.stdout) or {}).get(_LABEL) == digest:
        return IMAGE
    net = ["--network", "host", "-v", "/etc/ssl/certs:/etc/ssl/certs:ro"]
    if Path("/etc/pip.conf").is_file():
        net += ["-v", "/etc/pip.conf:/etc/pip.conf:ro"]
    # docker format: the OCI format has no HEALTHCHECK, and podman would drop the image's
    done = subprocess.run([*PODMAN, "build", "--pull=never", "--format", "docker", *LIMITS, *net,
                           "--label", f"{_LABEL}={digest}", "-t", IMAGE, str(ROOT)],
                          capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"podman build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return IMAGE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    """(status, content type, body); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def wait_http(url: str, status: int = 200, timeout: float = 90.0, alive=None) -> None:
    """Until ``url`` answers ``status``; ``alive()`` False (the container exited) fails at once."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise AssertionError(f"exited before {url} answered {status}")
        try:
            last = http_get(url, timeout=3)[0]
            if last == status:
                return
        except OSError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer {status} within {timeout:.0f} s (last: {last})")
