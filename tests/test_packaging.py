"""The wheel a user installs: the package's code and data, nothing else from the root."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = {"edge", "core_ext", "services", "backends", "ops", "cli", "sdk", "bench"}


def test_wheel_ships_only_the_package(tmp_path: Path) -> None:
    # build from a copy of the tracked files, so a stale build/ of the checkout cannot hide anything
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    source = tmp_path / "src"
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # the web app as `make web` leaves it (built files only; its sources stay out of the wheel)
    (source / "web/app/dist/assets").mkdir(parents=True)
    (source / "web/app/dist/index.html").write_text("<!doctype html>")
    (source / "web/app/dist/assets/index-1a2b.js").write_text("")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("edgeim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    top = {n.split("/")[1] for n in names if n.startswith("edgeim/") and n.count("/") > 1}
    assert top == SUBPACKAGES | {"web"}
    assert sorted(n for n in names if n.startswith("edgeim/web/")) == [
        "edgeim/web/app/dist/assets/index-1a2b.js", "edgeim/web/app/dist/index.html"]
    assert sorted(n for n in names if n.startswith("edgeim/") and n.count("/") == 1) == ["edgeim/__init__.py", "edgeim/py.typed"]
    assert not [n for n in names if n.startswith("edgeim/tests/")]
    # `im bench` works from an install: its scenarios and JMeter plan ship as package data
    for name in ("scenarios/send_1to1.toml", "scenarios/online.toml", "jmeter/edgeim.jmx", "jmeter/fetch-jmeter.sh"):
        assert f"edgeim/bench/{name}" in names
    assert any(n.startswith("edgeim/core_ext/_codec.") and n.endswith(".so") for n in names)
