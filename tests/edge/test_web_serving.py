"""The node serves the web chat app on its HTTP port: the built files under /, the index at
/, /web-config.json naming the WebSocket URL, nothing outside the app's folder, and a clear
answer when the app was never built. The other HTTP routes stay reachable beside it."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "assets").mkdir(parents=True)
    (app / "index.html").write_text("<!doctype html><title>edgeim</title><script src='./assets/main-1a2b.js'></script>")
    (app / "assets" / "main-1a2b.js").write_text("console.log('hi')")
    (tmp_path / "secret.txt").write_text("not for the web")
    return app


def test_the_app_its_assets_and_its_config_are_served(serve_factory, app_dir):
    node = serve_factory(web_dir=app_dir)
    printed = node.proc.stdout.readline()  # the line after the banner: where to open the app

    index = get(node.http_url + "/")
    asset = get(node.http_url + "/assets/main-1a2b.js")
    status, _, body = get(node.http_url + "/web-config.json")

    assert printed == f"web app: {node.http_url}/\n"
    assert index[0] == 200 and b"<title>edgeim</title>" in index[2]
    assert index[1]["Content-Type"].startswith("text/html") and index[1]["Cache-Control"] == "no-cache"
    assert asset[0] == 200 and asset[2] == b"console.log('hi')" and "immutable" in asset[1]["Cache-Control"]
    assert status == 200 and json.loads(body) == {"port": node.port, "path": "/ws", "recall_window": 120.0, "edit_window": 172800.0}
    assert get(node.http_url + "/healthz")[0] == 200  # not shadowed by the app's catch-all route


def test_nothing_outside_the_app_folder_or_missing_is_served(serve_factory, app_dir):
    node = serve_factory(web_dir=app_dir)

    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt", "/nope.js"):
        status, _, body = get(node.http_url + path)
        assert status == 404 and b"not for the web" not in body, path


def test_a_configured_websocket_url_is_given_as_is(serve_factory, app_dir):
    node = serve_factory(web_dir=app_dir, web_ws_url="wss://chat.example.com/ws")

    assert json.loads(get(node.http_url + "/web-config.json")[2]) == {"ws": "wss://chat.example.com/ws", "recall_window": 120.0, "edit_window": 172800.0}


def test_a_websocket_path_is_given_for_the_pages_own_host(serve_factory, app_dir):
    node = serve_factory(web_dir=app_dir, web_ws_url="/ws", recall_window=30, edit_window=600)

    assert json.loads(get(node.http_url + "/web-config.json")[2]) == {"path": "/ws", "recall_window": 30.0, "edit_window": 600.0}


@pytest.mark.parametrize("ws_url", ["", "/ws"])
def test_the_config_echoes_nothing_of_the_request(serve_factory, app_dir, ws_url):
    node = serve_factory(web_dir=app_dir, web_ws_url=ws_url)
    forged = urllib.request.Request(node.http_url + "/web-config.json",
                                    headers={"Host": "evil.example:1", "X-Forwarded-Proto": "https"})
    with urllib.request.urlopen(forged, timeout=10) as reply:
        body = reply.read()

    assert b"evil" not in body and body == get(node.http_url + "/web-config.json")[2]


def test_a_nul_byte_in_a_path_is_not_found(serve_factory, app_dir):
    node = serve_factory(web_dir=app_dir)

    for path in ("/%00", "/assets/main-1a2b.js%00.html", "/" + "a" * 5000):
        status, _, body = get(node.http_url + path)
        assert status == 404 and body == b"not found\n", path
    assert node.alive and get(node.http_url + "/")[0] == 200


def test_an_unbuilt_app_says_how_to_build_it(serve_factory, tmp_path):
    node = serve_factory(web_dir=tmp_path / "never-built")

    status, _, body = get(node.http_url + "/")

    assert status == 404 and b"make web" in body
    assert "not built" in node.proc.stdout.readline()


def test_the_app_can_be_switched_off(serve_factory, app_dir):
    node = serve_factory(web_dir="off")

    assert get(node.http_url + "/")[0] == 404
    assert get(node.http_url + "/web-config.json")[0] == 404
