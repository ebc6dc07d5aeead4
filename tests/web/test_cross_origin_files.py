"""A page of another origin uploads and downloads through the node's signed file URLs, in
Chromium: the files' routes answer CORS preflights and allow every origin (the signature is
the authorization), and a refusal stays readable to the page rather than a CORS error.

The page is the node's own /healthz on its WebSocket port: same host, another port, so
another origin than the HTTP port that serves the files."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from edgeim.sdk import Client

from harness import new_user

CHROMIUM = Path("/usr/bin/chromium")

PUT = """async ([url, headers, bytes]) =>
  (await fetch(url, {method: "PUT", headers, body: new Uint8Array(bytes)})).status"""
GET = """async ([url]) => {
  const back = await fetch(url);
  const tampered = await fetch(url.replace("X-Im-Signature=", "X-Im-Signature=0"));
  return {bytes: Array.from(new Uint8Array(await back.arrayBuffer())), tampered: tampered.status,
          why: await tampered.text()};
}"""


async def test_a_page_of_another_origin_uploads_and_downloads(serve_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    node = serve_factory()
    data = bytes(range(256)) * 3
    async with Client(node.url) as alice, Client(node.url) as bob, async_playwright() as p:
        await new_user(alice)
        _, bob_id = await new_user(bob)
        conv = (await alice.send(bob_id, "a file follows")).conv
        grant = await alice.file_upload_grant(conv, "bytes.bin", len(data), "application/octet-stream")
        # Content-Length is the browser's to set (a fetch may not name it)
        headers = {h.name: h.value for h in grant.headers if h.name.lower() != "content-length"}
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.goto(f"http://127.0.0.1:{node.port}/healthz")
            put = await page.evaluate(PUT, [grant.url, headers, list(data)])
            # a download grant is given once the upload is complete
            got = await page.evaluate(GET, [(await bob.file_download_grant(grant.key)).url])
        finally:
            await browser.close()

    assert put == 200
    assert bytes(got["bytes"]) == data
    assert got["tampered"] == 403 and "signature" in got["why"]
