"""The web chat app (web/app) in a real browser (Debian's chromium, driven by Playwright)
against a real ``im serve`` that serves the built app on its HTTP port.

Users meet in the browser: register, become friends, chat, share an image and a file, see
read receipts, typing and presence, recall, create and run a group with a third user, pin
and mute, reload and find their history, log out; a phone-sized viewport runs the
list/chat panes with a back button; a long history pages back. A third user, and the
seeding of long histories, go through the Python SDK (a real client on the same node).

Screenshots are kept under <repo>/test-artifacts/web/ (their paths are printed).
The app must be built first (`make web`, or `npm run build -w app` in web/)."""
from __future__ import annotations

import asyncio
import re
import struct
import uuid
import zlib
from pathlib import Path
from typing import Iterator

import pytest
from harness import ServeProcess
from playwright.async_api import async_playwright, expect

from edgeim.sdk import Client, ServerError

ROOT = Path(__file__).resolve().parents[2]
APP_DIST = ROOT / "web" / "app" / "dist"
ARTIFACTS = ROOT / "test-artifacts" / "web"
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "secret-pw"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# the browser on this 2-core machine, beside a node and Python clients, is slow to settle
expect.set_options(timeout=15_000)


def app_url(node: ServeProcess) -> str:
    """Where the browser loads the app: `/` of the node's HTTP port (edge/http.py serves
    web/app/dist there, and /web-config.json names the node's WebSocket URL)."""
    return node.http_url + "/"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ServeProcess]:
    if not (APP_DIST / "index.html").is_file():
        pytest.fail(f"the web app is not built: {APP_DIST}/index.html is missing; run `make web` "
                    "(or `npm install && npm run build` in web/)", pytrace=False)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    # friends-only private messages, the server's default (the harness lets strangers send)
    server = ServeProcess(tmp_path / "data", strangers_may_send=0)
    server.log_path = tmp_path / "node.log"
    server.start()
    yield server  # type: ignore[misc]
    if server.alive:
        server.stop()


#: uncaught exceptions of the app's pages during the current test (none may happen)
page_errors: list[str] = []


@pytest.fixture
async def browser():  # type: ignore[no-untyped-def]
    page_errors.clear()
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()
    assert page_errors == [], f"the app threw: {page_errors}"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour (the app measures images with the browser's decoder)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Network:
    """The page's WebSocket through a route a test can cut, as a network drop does:
    ``drop()`` closes every connection and refuses new ones until ``online`` is True again."""

    def __init__(self) -> None:
        self.online = True
        self._sockets: list[tuple[object, object]] = []

    async def through(self, ws) -> None:  # type: ignore[no-untyped-def]
        if not self.online:
            await ws.close()
            return
        self._sockets.append((ws, ws.connect_to_server()))

    async def drop(self) -> None:
        self.online = False
        for ws, server in self._sockets:
            await server.close()  # type: ignore[attr-defined]
            await ws.close()  # type: ignore[attr-defined]
        self._sockets.clear()


async def open_page(browser, node: ServeProcess, viewport: dict[str, int] = DESKTOP,  # type: ignore[no-untyped-def]
                    network: Network | None = None, **options):
    """A page of the app in a browser context of its own; its WebSocket through ``network``
    when given."""
    context = await browser.new_context(viewport=viewport, **options)
    if network is not None:
        await context.route_web_socket(re.compile(r"/ws$"), network.through)
    page = await context.new_page()
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    await page.goto(app_url(node))
    return page


async def register(page, username: str, nickname: str) -> None:  # type: ignore[no-untyped-def]
    await page.get_by_test_id("mode-register").click()
    await page.get_by_test_id("username").fill(username)
    await page.get_by_test_id("password").fill(PASSWORD)
    await page.get_by_test_id("nickname").fill(nickname)
    await page.get_by_test_id("auth-submit").click()
    await expect(page.get_by_test_id("me")).to_have_text(nickname)


async def log_in(page, username: str, name_shown: str) -> None:  # type: ignore[no-untyped-def]
    await page.get_by_test_id("mode-login").click()
    await page.get_by_test_id("username").fill(username)
    await page.get_by_test_id("password").fill(PASSWORD)
    await page.get_by_test_id("auth-submit").click()
    await expect(page.get_by_test_id("me")).to_have_text(name_shown)


def conv_item(page, title: str):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("conv").filter(has=page.get_by_test_id("conv-title").filter(has_text=title))


def message(page, text: str):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("message").filter(has_text=text)


async def open_menu(item, button: str) -> None:  # type: ignore[no-untyped-def]
    """Open an item's action menu as a mouse user does: hover, then its "⋯" button."""
    await item.hover()
    await item.get_by_test_id(button).click()
    await expect(item.get_by_test_id("menu")).to_be_visible()


async def long_press(page, item) -> None:  # type: ignore[no-untyped-def]
    """Hold a finger on an item (touch events through the browser's input pipeline)."""
    box = await item.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    await asyncio.sleep(0.8)  # holding the finger: the gesture itself, not a wait for a result
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    await cdp.detach()


async def sdk_user(node: ServeProcess, nickname: str, terminal: str = "ios") -> tuple[Client, str, int]:
    """A user on the Python SDK: (connected client, username, user id)."""
    client = Client(node.url)
    await client.connect()
    username = unique(nickname.split()[0].lower())
    user_id = await client.register(username, PASSWORD, nickname)
    await client.login(username, PASSWORD, terminal)
    return client, username, user_id


async def user_id_of(client: Client, username: str) -> int:
    return int((await client.user_find(username)).user)


async def next_message(client: Client):  # type: ignore[no-untyped-def]
    """The next message pushed to a Python SDK client."""
    return await asyncio.wait_for(client.pushes.get(), 15)


async def test_two_users_chat_group_receipts_recall_and_reload(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    alice_name, bob_name = unique("alice"), unique("bob")
    alice = await open_page(browser, node)
    bob = await open_page(browser, node)
    await register(alice, alice_name, "Alice")
    await register(bob, bob_name, "Bob")

    # a server error is shown in words (its code kept on the notice), not swallowed
    await alice.get_by_test_id("tab-contacts").click()
    nobody = unique("nobody")
    await alice.get_by_test_id("find-username").fill(nobody)
    await alice.get_by_test_id("find-submit").click()
    await expect(alice.get_by_test_id("error")).to_have_attribute("data-code", "3000")
    await expect(alice.get_by_test_id("error")).to_contain_text(f"No one is called “{nobody}” here")

    # friends: Alice finds Bob by username and asks; Bob accepts
    await alice.get_by_test_id("find-username").fill(bob_name)
    await alice.get_by_test_id("find-submit").click()
    await expect(alice.get_by_test_id("found-name")).to_have_text("Bob")
    await alice.get_by_test_id("add-friend").click()
    await expect(alice.get_by_test_id("info").filter(has_text="Friend request sent to Bob")).to_be_visible()
    await expect(bob.get_by_test_id("requests-badge")).to_have_text("1")
    await bob.get_by_test_id("tab-contacts").click()
    await expect(bob.get_by_test_id("friend-request")).to_contain_text("Alice")
    await shot(bob, "desktop-01-friend-request")
    await bob.get_by_test_id("accept-request").click()
    await expect(bob.get_by_test_id("friend-name")).to_have_text("Alice")
    await expect(alice.get_by_test_id("friend-name")).to_have_text("Bob")

    # chat: Alice writes first; Bob sees it unread in his list, opens it, and Alice sees "read"
    await alice.get_by_test_id("friend-message").click()
    await expect(alice.get_by_test_id("chat-title")).to_have_text("Bob")
    await expect(alice.get_by_test_id("chat-status")).to_have_text("online")
    await alice.get_by_test_id("composer").fill("hello bob")
    await alice.get_by_test_id("send").click()
    await expect(message(alice, "hello bob").get_by_test_id("receipt")).to_have_text("sent")
    await bob.get_by_test_id("tab-chats").click()
    await expect(conv_item(bob, "Alice").get_by_test_id("unread")).to_have_text("1")
    await expect(conv_item(bob, "Alice").get_by_test_id("conv-preview")).to_contain_text("hello bob")
    await conv_item(bob, "Alice").click()
    await expect(message(bob, "hello bob")).to_be_visible()
    await expect(message(alice, "hello bob").get_by_test_id("receipt")).to_have_text("read")
    await expect(conv_item(bob, "Alice").get_by_test_id("unread")).to_have_count(0)

    # typing, then the answer
    await bob.get_by_test_id("composer").fill("hi ali")
    await expect(alice.get_by_test_id("typing")).to_have_text("Bob is typing…")
    await bob.get_by_test_id("composer").fill("hi alice")
    await bob.get_by_test_id("send").click()
    await expect(message(alice, "hi alice")).to_be_visible()
    await expect(message(alice, "hi alice").get_by_test_id("msg-from")).to_have_text("Bob")

    # recall: gone on both sides, "message recalled" in its place
    await alice.get_by_test_id("composer").fill("oops, wrong chat")
    await alice.get_by_test_id("send").click()
    await expect(message(bob, "oops, wrong chat")).to_be_visible()
    await open_menu(message(alice, "oops, wrong chat"), "msg-menu")
    await alice.get_by_test_id("recall").click()
    await expect(alice.get_by_test_id("recalled")).to_have_text("message recalled")
    await expect(bob.get_by_test_id("recalled")).to_have_text("message recalled")
    await expect(message(bob, "oops, wrong chat")).to_have_count(0)

    # an image (shown inline, decoded by the browser) and a file (a download link)
    await alice.get_by_test_id("file-input").set_input_files(
        {"name": "red.png", "mimeType": "image/png", "buffer": png(40, 30, (220, 30, 30))})
    for page in (alice, bob):
        image = page.get_by_test_id("msg-image")
        await expect(image).to_be_visible()
        assert await image.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])") == [40, 30]
    await alice.get_by_test_id("file-input").set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"meeting at noon\n"})
    link = bob.get_by_test_id("msg-file")
    await expect(link).to_contain_text("notes.txt")
    answer = await bob.request.get(await link.get_attribute("href"))
    assert answer.status == 200 and await answer.body() == b"meeting at noon\n"
    await shot(alice, "desktop-02-private-chat-alice")
    await shot(bob, "desktop-03-private-chat-bob")

    # a group with a third user (Carol, on the Python SDK): Alice befriends her, creates it
    carol, carol_name, _ = await sdk_user(node, "Carol")
    try:
        await alice.get_by_test_id("tab-contacts").click()
        await alice.get_by_test_id("find-username").fill(carol_name)
        await alice.get_by_test_id("find-submit").click()
        await alice.get_by_test_id("add-friend").click()
        await expect(alice.get_by_test_id("info").filter(has_text="Friend request sent to Carol")).to_be_visible()
        requests = await carol.friend_requests()
        assert [r.message for r in requests] == [""]
        await carol.friend_accept(requests[0].user)
        await expect(alice.get_by_test_id("friend-name")).to_have_count(2)
        await alice.get_by_test_id("group-name").fill("Trio")
        await alice.get_by_test_id("group-pick").filter(has_text="Bob").get_by_role("checkbox").check()
        await alice.get_by_test_id("group-pick").filter(has_text="Carol").get_by_role("checkbox").check()
        await alice.get_by_test_id("group-create").click()
        await expect(alice.get_by_test_id("chat-title")).to_have_text("Trio")
        await expect(alice.get_by_test_id("chat-status")).to_have_text("3 members")
        await expect(conv_item(bob, "Trio")).to_be_visible()

        # Carol mentions Bob: his list flags it; Alice sees Carol's name on it
        group_id = int((await carol.groups())[0].group)
        await carol.send_group(group_id, f"hey @{bob_name}", mentions=[await user_id_of(carol, bob_name)])
        await expect(conv_item(bob, "Trio").get_by_test_id("mentioned")).to_be_visible()
        await expect(conv_item(bob, "Trio").get_by_test_id("unread")).to_have_text("1")
        await expect(message(alice, "hey @").get_by_test_id("msg-from")).to_have_text("Carol")
        await shot(bob, "desktop-04-mentioned")

        # readers: Bob opens the group, then Carol reads: Alice's message is read by 1, then 2
        await alice.get_by_test_id("composer").fill("hi group")
        await alice.get_by_test_id("send").click()
        await expect(message(alice, "hi group").get_by_test_id("receipt")).to_have_text("read by 0")
        await conv_item(bob, "Trio").click()
        await expect(message(bob, "hi group")).to_be_visible()
        await expect(conv_item(bob, "Trio").get_by_test_id("mentioned")).to_have_count(0)
        await expect(message(alice, "hi group").get_by_test_id("receipt")).to_have_text("read by 1")
        synced = await carol.sync(f"g{group_id}")
        await carol.read(f"g{group_id}", synced.msgs[-1].seq)
        await expect(message(alice, "hi group").get_by_test_id("receipt")).to_have_text("read by 2")

        # admin actions: Bob becomes admin, Carol is muted (her sends refused), then kicked
        await alice.get_by_test_id("members-toggle").click()
        members = alice.get_by_test_id("member")
        await expect(members).to_have_count(3)
        await expect(members.filter(has_text="Alice").get_by_test_id("member-role")).to_have_text("owner")
        await members.filter(has_text="Bob").get_by_test_id("member-make-admin").click()
        await expect(members.filter(has_text="Bob").get_by_test_id("member-role")).to_have_text("admin")
        await members.filter(has_text="Carol").get_by_test_id("member-mute").click()
        await expect(members.filter(has_text="Carol").get_by_test_id("member-muted")).to_be_visible()
        with pytest.raises(ServerError) as refused:
            await carol.send_group(group_id, "can anyone hear me?")
        assert refused.value.code == 3007
        await shot(alice, "desktop-05-group-members")
        await members.filter(has_text="Carol").get_by_test_id("member-kick").click()
        await expect(members).to_have_count(2)
        await expect(alice.get_by_test_id("chat-status")).to_have_text("2 members")
        # and invited back: she reads the group from her new join on
        await alice.get_by_test_id("invite-pick").filter(has_text="Carol").get_by_role("checkbox").check()
        await alice.get_by_test_id("invite").click()
        await expect(members).to_have_count(3)
        await expect(members.filter(has_text="Carol").get_by_test_id("member-muted")).to_have_count(0)
        await carol.send_group(group_id, "back again")
        await expect(message(alice, "back again").get_by_test_id("msg-from")).to_have_text("Carol")
    finally:
        await carol.close()

    # pin one conversation, mute the other; Bob reloads: still logged in, flags and history kept
    await open_menu(conv_item(bob, "Alice"), "conv-menu")
    await conv_item(bob, "Alice").get_by_test_id("pin-toggle").click()
    await expect(conv_item(bob, "Alice").get_by_test_id("pinned")).to_be_visible()
    await open_menu(conv_item(bob, "Trio"), "conv-menu")
    await conv_item(bob, "Trio").get_by_test_id("mute-toggle").click()
    await expect(conv_item(bob, "Trio").get_by_test_id("muted")).to_be_visible()
    await bob.reload()
    await expect(bob.get_by_test_id("me")).to_have_text("Bob")
    await expect(bob.get_by_test_id("conv").first).to_contain_text("Alice")
    await expect(conv_item(bob, "Alice").get_by_test_id("pinned")).to_be_visible()
    await expect(conv_item(bob, "Trio").get_by_test_id("muted")).to_be_visible()
    await conv_item(bob, "Alice").click()
    for text in ("hello bob", "hi alice"):
        await expect(message(bob, text)).to_be_visible()
    await expect(bob.get_by_test_id("recalled")).to_have_text("message recalled")
    await expect(bob.get_by_test_id("msg-image")).to_be_visible()
    await expect(bob.get_by_test_id("msg-file")).to_contain_text("notes.txt")
    await conv_item(bob, "Trio").click()
    await expect(message(bob, "hi group")).to_be_visible()
    await shot(bob, "desktop-06-bob-after-reload")

    # Bob logs out: the form is back, a reload stays logged out, Alice sees him offline
    await bob.get_by_test_id("logout").click()
    await expect(bob.get_by_test_id("auth-form")).to_be_visible()
    await bob.reload()
    await expect(bob.get_by_test_id("auth-form")).to_be_visible()
    await conv_item(alice, "Bob").click()
    await expect(alice.get_by_test_id("chat-status")).to_have_text("offline")
    await log_in(bob, bob_name, "Bob")
    await expect(alice.get_by_test_id("chat-status")).to_have_text("online")


async def test_phone_viewport_list_and_chat_panes(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    # Dan (Python SDK) is Erin's friend; he writes three messages and mentions her in a group
    dan, _, dan_id = await sdk_user(node, "Dan")
    erin, erin_name, erin_id = await sdk_user(node, "Erin", terminal="desktop")
    try:
        await dan.friend_request(erin_id, "hi, it's Dan")
        await erin.friend_accept(dan_id)
        for n in range(3):
            await dan.send(erin_id, f"phone message {n}")
        group = await dan.group_create("Phones", [erin_id])
        await dan.send_group(int(group.group), f"@{erin_name} look", mentions=[erin_id])
        await erin.close()

        phone = await open_page(browser, node, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
        await log_in(phone, erin_name, "Erin")
        # the list fills the screen; no chat pane beside it, nothing wider than the phone
        await expect(conv_item(phone, "Dan").get_by_test_id("unread")).to_have_text("3")
        await expect(conv_item(phone, "Phones").get_by_test_id("mentioned")).to_be_visible()
        await expect(phone.get_by_test_id("chat")).to_have_count(0)
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(phone, "phone-01-list")

        # a long press opens a conversation's actions (and does not open the chat)
        await long_press(phone, conv_item(phone, "Phones"))
        await expect(conv_item(phone, "Phones").get_by_test_id("menu")).to_be_visible()
        await expect(phone.get_by_test_id("chat")).to_have_count(0)
        await conv_item(phone, "Phones").get_by_test_id("mute-toggle").tap()
        await expect(conv_item(phone, "Phones").get_by_test_id("muted")).to_be_visible()

        await conv_item(phone, "Dan").tap()
        await expect(phone.get_by_test_id("chat")).to_be_visible()
        await expect(phone.get_by_test_id("conv-list")).to_be_hidden()
        await expect(message(phone, "phone message 2")).to_be_visible()
        await expect(phone.get_by_test_id("chat-status")).to_have_text("online")
        await phone.get_by_test_id("composer").fill("answer from a phone")
        await phone.get_by_test_id("send").tap()
        await expect(message(phone, "answer from a phone").get_by_test_id("receipt")).to_have_text("sent")
        pushed = await next_message(dan)
        assert pushed.content == "answer from a phone"
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(phone, "phone-02-chat")
        # a long press on a message opens its actions: recall it
        await phone.get_by_test_id("composer").fill("typo here")
        await phone.get_by_test_id("send").tap()
        await long_press(phone, message(phone, "typo here").get_by_test_id("msg-text"))
        await message(phone, "typo here").get_by_test_id("recall").tap()
        await expect(phone.get_by_test_id("recalled")).to_have_text("message recalled")

        await phone.get_by_test_id("back").tap()
        await expect(phone.get_by_test_id("conv-list")).to_be_visible()
        await expect(phone.get_by_test_id("chat")).to_have_count(0)
        await expect(conv_item(phone, "Dan").get_by_test_id("unread")).to_have_count(0)
        await conv_item(phone, "Phones").tap()
        await phone.get_by_test_id("members-toggle").tap()
        await expect(phone.get_by_test_id("member")).to_have_count(2)
        await shot(phone, "phone-03-group-members")

        # block: Erin blocks Dan from her friends list; his messages are refused
        await phone.get_by_test_id("back").tap()
        await phone.get_by_test_id("tab-contacts").tap()
        await phone.get_by_test_id("friend").filter(has_text="Dan").get_by_test_id("friend-block").tap()
        await expect(phone.get_by_test_id("info").filter(has_text="Dan blocked")).to_be_visible()
        with pytest.raises(ServerError) as refused:
            await dan.send(erin_id, "are you there?")
        assert refused.value.code == 3004
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(phone, "phone-04-contacts")
        # the block is the server's (BLOCKS): after a reload Dan is still shown as blocked
        await phone.reload()
        await phone.get_by_test_id("tab-contacts").tap()
        await expect(phone.get_by_test_id("friend").filter(has_text="Dan").get_by_test_id("friend-unblock")).to_be_visible()
    finally:
        await dan.close()


async def test_history_pages_back_to_the_first_message(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    fay, _, fay_id = await sdk_user(node, "Fay")
    gus, gus_name, gus_id = await sdk_user(node, "Gus")
    try:
        await fay.friend_request(gus_id)
        await gus.friend_accept(fay_id)
        for n in range(75):
            await fay.send(gus_id, f"line {n:02d}")
    finally:
        await fay.close()
        await gus.close()

    page = await open_page(browser, node)
    # a wrong password is refused, by name; the right one then works
    await page.get_by_test_id("username").fill(gus_name)
    await page.get_by_test_id("password").fill("not-the-password")
    await page.get_by_test_id("auth-submit").click()
    await expect(page.get_by_test_id("error")).to_have_text("Wrong username or password.✕")
    await log_in(page, gus_name, "Gus")
    await expect(conv_item(page, "Fay").get_by_test_id("unread")).to_have_text("75")
    await conv_item(page, "Fay").click()
    await expect(message(page, "line 74")).to_be_visible()
    # one page of the newest, then older pages on demand, down to the first message
    await expect(page.get_by_test_id("message")).to_have_count(30)
    await expect(message(page, "line 00")).to_have_count(0)
    await expect(page.get_by_test_id("load-older")).to_be_visible()
    # scrolling up to the top loads the page before; so does the "load older" button (clicked
    # where it is: a click's scroll into view would itself load a page)
    await page.get_by_test_id("messages").evaluate("list => { list.scrollTop = 0; }")
    await expect(page.get_by_test_id("message")).to_have_count(60)
    await page.get_by_test_id("load-older").dispatch_event("click")
    await expect(page.get_by_test_id("message")).to_have_count(75)
    await expect(page.get_by_test_id("history-start")).to_be_visible()
    await expect(page.get_by_test_id("load-older")).to_have_count(0)
    texts = await page.get_by_test_id("msg-text").all_inner_texts()
    assert texts == [f"line {n:02d}" for n in range(75)]
    await shot(page, "desktop-07-history-paged")


# -- the first hour of a new user (issue 19) --------------------------------------------------

def start_node(tmp_path: Path, **settings: object) -> ServeProcess:
    """A node with settings of its own (the `node` fixture's, plus these); stopped by the caller."""
    server = ServeProcess(tmp_path / "data", strangers_may_send=0, **settings)
    server.log_path = tmp_path / "node.log"
    server.start()
    return server


async def befriend(a: Client, b: Client, b_id: int, a_id: int) -> None:
    await a.friend_request(b_id)
    await b.friend_accept(a_id)


async def open_aged_chat(browser, node: ServeProcess):  # type: ignore[no-untyped-def]
    """Kim's chat with her friend Lee open in a browser, holding one message of Kim's sent
    1.5 s before (past a node's 1 s window: a precondition, not an assertion); the page
    and that message."""
    kim, kim_name, kim_id = await sdk_user(node, "Kim")
    lee, _, lee_id = await sdk_user(node, "Lee")
    try:
        await befriend(kim, lee, lee_id, kim_id)
        await kim.send(lee_id, "sent a while ago")
        await asyncio.sleep(1.5)
    finally:
        await kim.close()
        await lee.close()
    page = await open_page(browser, node)
    await log_in(page, kim_name, "Kim")
    await conv_item(page, "Lee").click()
    return page, message(page, "sent a while ago")


async def test_two_browsers_of_one_account_stay_signed_in_together(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    oli, _, oli_id = await sdk_user(node, "Oli")
    try:
        first = await open_page(browser, node)
        second = await open_page(browser, node)  # another browser context: another browser
        pat_name = unique("pat")
        await register(first, pat_name, "Pat")
        await log_in(second, pat_name, "Pat")
        pat_id = await user_id_of(oli, pat_name)
        await oli.friend_request(pat_id)
        await expect(first.get_by_test_id("requests-badge")).to_have_text("1")
        await expect(second.get_by_test_id("requests-badge")).to_have_text("1")

        # each browser has its own terminal: both sessions are live on the server
        terminals = [await page.evaluate("localStorage.getItem('edgeim.terminal')") for page in (first, second)]
        assert all(t and t.startswith("web-") and len(t) <= 16 for t in terminals) and terminals[0] != terminals[1]
        await second.get_by_test_id("tab-contacts").click()
        await second.get_by_test_id("accept-request").click()
        await expect(second.get_by_test_id("friend-name")).to_have_text("Oli")
        [seen] = await oli.presence([pat_id])
        assert sorted(t.terminal for t in seen.terminals) == sorted(terminals)
        await second.get_by_test_id("tab-chats").click()

        # a message reaches both, neither was signed out
        await oli.send(pat_id, "to both of you")
        for page in (first, second):
            await expect(conv_item(page, "Oli").get_by_test_id("conv-preview")).to_contain_text("to both of you")
            await expect(page.get_by_test_id("me")).to_have_text("Pat")

        # a new tab of the first browser shares its terminal: that login replaces the older tab's
        third = await first.context.new_page()
        third.on("pageerror", lambda exc: page_errors.append(str(exc)))
        await third.goto(app_url(node))
        await expect(third.get_by_test_id("me")).to_have_text("Pat")
        await expect(first.get_by_test_id("auth-form")).to_be_visible()
        await expect(first.get_by_test_id("error")).to_contain_text("signed in again in another tab")
        await expect(second.get_by_test_id("me")).to_have_text("Pat")
        await oli.send(pat_id, "still here?")
        for page in (second, third):
            await expect(conv_item(page, "Oli").get_by_test_id("conv-preview")).to_contain_text("still here?")
    finally:
        await oli.close()


async def test_a_stranger_is_offered_a_friend_request_and_errors_speak_plainly(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    jay, jay_name, jay_id = await sdk_user(node, "Jay")
    try:
        page = await open_page(browser, node)
        ivy_name = unique("ivy")
        await register(page, ivy_name, "Ivy")
        ivy_id = await user_id_of(jay, ivy_name)

        # a stranger's chat offers the request instead of a composer that would fail
        await page.get_by_test_id("tab-contacts").click()
        await page.get_by_test_id("find-username").fill(jay_name)
        await page.get_by_test_id("find-submit").click()
        await page.get_by_test_id("found-message").click()
        await expect(page.get_by_test_id("chat-title")).to_have_text("Jay")
        await expect(page.get_by_test_id("ask-friend")).to_contain_text("not friends yet")
        await expect(page.get_by_test_id("composer")).to_have_count(0)
        await shot(page, "desktop-08-stranger")
        await page.get_by_test_id("ask-note").fill("we met at the meetup")
        await page.get_by_test_id("ask-send").click()
        await expect(page.get_by_test_id("request-pending")).to_be_visible()
        await expect(page.get_by_test_id("chat-status")).to_have_text("friend request sent")
        requests = await jay.friend_requests()
        assert [(int(r.user), r.message) for r in requests] == [(ivy_id, "we met at the meetup")]

        # the request shows as pending in Contacts, also after a reload: not sendable twice
        await page.reload()
        await page.get_by_test_id("tab-contacts").click()
        await page.get_by_test_id("find-username").fill(jay_name)
        await page.get_by_test_id("find-submit").click()
        await expect(page.get_by_test_id("found-user").get_by_test_id("request-pending")).to_be_disabled()
        await expect(page.get_by_test_id("add-friend")).to_have_count(0)
        # no presence subscription was tried for a stranger: nothing failed along the way
        await expect(page.get_by_test_id("error")).to_have_count(0)

        # Jay accepts: the chat opens up, with his presence
        await jay.friend_accept(ivy_id)
        await expect(page.get_by_test_id("friend-name")).to_have_text("Jay")
        await page.get_by_test_id("friend-message").click()
        await expect(page.get_by_test_id("chat-status")).to_have_text("online")
        await page.get_by_test_id("composer").fill("hi jay")
        await page.get_by_test_id("send").click()
        await expect(message(page, "hi jay").get_by_test_id("receipt")).to_have_text("sent")

        # Jay ends the friendship: a refused send says so with his name, not an id or a code
        await jay.friend_delete(ivy_id)
        await expect(page.get_by_test_id("stranger-bar")).to_contain_text("Jay is not your friend")
        await page.get_by_test_id("composer").fill("still friends?")
        await page.get_by_test_id("send").click()
        error = page.get_by_test_id("error")
        await expect(error).to_have_attribute("data-code", "3003")
        await expect(error).to_contain_text("Jay is not your friend yet. Send a friend request first.")
        assert "NOT_FRIENDS" not in await error.inner_text() and str(jay_id) not in await error.inner_text()
        await shot(page, "desktop-09-error-in-words")
        # the next action that works clears it
        await open_menu(conv_item(page, "Jay"), "conv-menu")
        await conv_item(page, "Jay").get_by_test_id("pin-toggle").click()
        await expect(conv_item(page, "Jay").get_by_test_id("pinned")).to_be_visible()
        await expect(error).to_have_count(0)

        # an error does not outlive its session: log out and in again, and it is gone
        await page.get_by_test_id("composer").fill("one more try")
        await page.get_by_test_id("send").click()
        await expect(error).to_have_attribute("data-code", "3003")
        await page.get_by_test_id("logout").click()
        await expect(page.get_by_test_id("auth-form")).to_be_visible()
        await expect(error).to_have_count(0)
        await log_in(page, ivy_name, "Ivy")
        await expect(page.get_by_test_id("error")).to_have_count(0)
        # and a notice goes away by itself after a few seconds
        await page.get_by_test_id("tab-contacts").click()
        await page.get_by_test_id("find-username").fill(unique("nobody"))
        await page.get_by_test_id("find-submit").click()
        await expect(error).to_have_count(1)
        await expect(error).to_have_count(0, timeout=30_000)
    finally:
        await jay.close()


async def test_recall_is_offered_only_within_the_recall_window(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    short = start_node(tmp_path, recall_window=1)
    try:
        page, old = await open_aged_chat(browser, short)
        # the actions are out of the way until the pointer is on the message
        await expect(old.get_by_test_id("msg-menu")).to_be_hidden()
        await open_menu(old, "msg-menu")
        await expect(old.get_by_test_id("copy")).to_be_visible()
        await expect(old.get_by_test_id("recall")).to_have_count(0)
    finally:
        short.stop()


async def drop_file(page, testid: str, name: str, mime: str, data: bytes, event: str) -> None:  # type: ignore[no-untyped-def]
    """Drop a file on an element, or paste it into one (a DataTransfer made in the page)."""
    await page.get_by_test_id(testid).evaluate(
        """(el, [name, mime, bytes, event]) => {
            const data = new DataTransfer();
            data.items.add(new File([new Uint8Array(bytes)], name, { type: mime }));
            const made = event === "paste"
                ? new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true })
                : new DragEvent(event, { dataTransfer: data, bubbles: true, cancelable: true });
            el.dispatchEvent(made);
        }""", [name, mime, list(data), event])


async def test_a_chat_reads_like_a_daily_messenger(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    mia, _, mia_id = await sdk_user(node, "Mia")
    ned, ned_name, ned_id = await sdk_user(node, "Ned")
    try:
        await befriend(mia, ned, ned_id, mia_id)
        await mia.send(ned_id, "the pineapple recipe, as promised")
        for n in range(34):
            await mia.send(ned_id, f"filler {n:02d}")
        conv = f"p{min(mia_id, ned_id)}_{max(mia_id, ned_id)}"
        await ned.read(conv, 35)  # Ned read up to here on his phone
        for text in ("new one", "new two", "new three"):
            await mia.send(ned_id, text)
        await ned.close()

        page = await open_page(browser, node)
        await log_in(page, ned_name, "Ned")
        # the unread count in the tab's title; avatars with initials in the list
        await expect(page).to_have_title("(3) edgeim")
        await expect(conv_item(page, "Mia").get_by_test_id("avatar")).to_have_text("M")
        # friends' presence is watched from the start: Mia is online in the list
        await expect(conv_item(page, "Mia").get_by_title("online")).to_be_visible()
        await conv_item(page, "Mia").click()
        await expect(page).to_have_title("edgeim")

        # where Ned left off: the divider sits right before the first unread message
        divider = page.get_by_test_id("unread-divider")
        await expect(divider).to_have_text("Unread messages")
        after = await divider.evaluate("d => [d.nextElementSibling.dataset.seq, d.nextElementSibling.innerText]")
        assert after[0] == "36" and "new one" in after[1]
        # one sender's run is shown under one name: the divider starts a new run
        await expect(page.get_by_test_id("day-separator")).to_have_text(["Today"])
        await expect(message(page, "filler 33").get_by_test_id("msg-from")).to_have_count(0)
        await expect(message(page, "filler 33").get_by_test_id("avatar")).to_have_count(0)
        await expect(message(page, "new one").get_by_test_id("msg-from")).to_have_text("Mia")
        await expect(message(page, "new one").get_by_test_id("avatar")).to_have_text("M")
        await expect(message(page, "new two").get_by_test_id("msg-from")).to_have_count(0)
        await expect(page.get_by_test_id("msg-from")).to_have_count(2)  # the page's first message, and "new one"

        # the emoji picker writes into the draft
        await page.get_by_test_id("composer").fill("thanks ")
        await page.get_by_test_id("emoji-toggle").click()
        await shot(page, "desktop-10-unread-divider-and-emoji")
        await page.get_by_test_id("emoji").filter(has_text="👍").click()
        await expect(page.get_by_test_id("composer")).to_have_value("thanks 👍")
        await page.get_by_test_id("composer").press("Enter")
        await expect(message(page, "thanks 👍").get_by_test_id("receipt")).to_have_text("sent")
        pushed = await next_message(mia)
        assert pushed.content == "thanks 👍"

        # an image pasted into the composer is sent; it opens large in a lightbox
        await drop_file(page, "composer", "screenshot.png", "image/png", png(40, 30, (30, 120, 220)), "paste")
        image = page.get_by_test_id("msg-image")
        await expect(image).to_be_visible()
        assert (await next_message(mia)).type == 2
        await image.click()
        big = page.get_by_test_id("lightbox-image")
        await expect(big).to_be_visible()
        assert await big.evaluate("img => img.decode().then(() => img.naturalWidth)") == 40
        assert (await big.bounding_box())["width"] > 200  # type: ignore[index]
        await shot(page, "desktop-11-lightbox")
        await page.keyboard.press("Escape")
        await expect(page.get_by_test_id("lightbox")).to_have_count(0)

        # a file dropped on the chat is sent
        await drop_file(page, "chat", "agenda.txt", "text/plain", b"1. coffee\n", "dragover")
        await expect(page.get_by_test_id("drop-hint")).to_be_visible()
        await drop_file(page, "chat", "agenda.txt", "text/plain", b"1. coffee\n", "drop")
        await expect(page.get_by_test_id("msg-file")).to_contain_text("agenda.txt")
        await expect(page.get_by_test_id("drop-hint")).to_have_count(0)
        pushed = await next_message(mia)
        assert pushed.type == 3 and pushed.content["name"] == "agenda.txt"

        # search finds an old message; opening it pages back to it and highlights it
        await page.get_by_test_id("search").fill("pineapple")
        await page.get_by_test_id("search").press("Enter")
        result = page.get_by_test_id("search-result")
        await expect(result).to_have_count(1)
        await expect(result).to_contain_text("Mia: the pineapple recipe")
        await result.click()
        found = message(page, "the pineapple recipe")
        await expect(found).to_have_class(re.compile(r"\bhighlighted\b"))
        await expect(found).to_be_in_viewport()
        await open_menu(found, "msg-menu")
        await shot(page, "desktop-12-search-and-menu")
        await page.get_by_test_id("search-close").click()
        await expect(conv_item(page, "Mia")).to_be_visible()
        # and goes offline there when she leaves
        await mia.close()
        await expect(conv_item(page, "Mia").get_by_title("online")).to_have_count(0)
        await expect(page.get_by_test_id("chat-status")).to_have_text("offline")
    finally:
        await mia.close()


async def test_a_message_in_a_hidden_tab_makes_a_desktop_notification(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    qin, _, qin_id = await sdk_user(node, "Qin")
    ray, ray_name, ray_id = await sdk_user(node, "Ray")
    try:
        await befriend(qin, ray, ray_id, qin_id)
        await ray.close()
        context = await browser.new_context(viewport=DESKTOP)
        # the tab is in the background, and the browser's Notification records what it is shown
        # (the operating system's part of it is not the app's)
        await context.add_init_script("""
            Object.defineProperty(document, "visibilityState", { get: () => "hidden" });
            window.shown = [];
            window.Notification = class {
                static permission = "default";
                static requestPermission() { window.Notification.permission = "granted"; return Promise.resolve("granted"); }
                constructor(title, options) { window.shown.push([title, options.body]); }
                close() {}
            };
        """)
        page = await context.new_page()
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        await page.goto(app_url(node))
        await log_in(page, ray_name, "Ray")
        await page.get_by_test_id("enable-notifications").click()  # asked on the user's click
        await expect(page.get_by_test_id("enable-notifications")).to_have_count(0)
        await qin.send(ray_id, "are you coming tonight?")
        await expect(conv_item(page, "Qin").get_by_test_id("unread")).to_have_text("1")
        assert await page.evaluate("window.shown") == [["Qin", "are you coming tonight?"]]
        await expect(page).to_have_title("(1) edgeim")
    finally:
        await qin.close()


async def test_the_main_screens_in_light_and_dark_on_a_desktop_and_a_phone(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    """The screens docs/web.md shows (copied from test-artifacts/web/docs-*.png into docs/web/),
    in the light and the dark theme: the app follows the system's colour scheme."""
    sam, _, sam_id = await sdk_user(node, "Sam Rivera")
    tea, tea_name, tea_id = await sdk_user(node, "Tea Lindqvist")
    uma, _, uma_id = await sdk_user(node, "Uma Okafor")
    try:
        await befriend(sam, tea, tea_id, sam_id)
        await befriend(uma, tea, tea_id, uma_id)
        group = await sam.group_create("Weekend trip", [tea_id, uma_id])
        gid = int(group.group)
        await sam.send_group(gid, "Who's in for the lake on Saturday?")
        await uma.send_group(gid, "Me! I can bring the kayak")
        await uma.send_group(gid, "and snacks")
        await tea.send_group(gid, "Count me in 🙌")
        await sam.send(tea_id, "Did you see the forecast?")
        sunny = await tea.send(sam_id, "Sunny all weekend")
        await sam.send(tea_id, "Perfect. Leaving at 8?", reply_to=sunny.msg_id)
        pick = await sam.send(tea_id, "I'll pick you up")
        await sam.edit(pick.conv, pick.seq, "I'll pick you up at 7:45")
        # pictures uploaded into the avatar spaces: shown through download grants
        await uma.upload_avatar(png(96, 96, (224, 122, 95)), "image/png")
        await tea.upload_avatar(png(96, 96, (72, 149, 239)), "image/png")
        await tea.close()

        screens = [("light", DESKTOP, {}), ("dark", DESKTOP, {}),
                   ("light", PHONE, {"is_mobile": True, "has_touch": True}), ("dark", PHONE, {"is_mobile": True, "has_touch": True})]
        for scheme, viewport, extra in screens:
            page = await open_page(browser, node, viewport, color_scheme=scheme, **extra)
            await log_in(page, tea_name, "Tea Lindqvist")
            background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background == ("rgb(15, 18, 24)" if scheme == "dark" else "rgb(243, 244, 247)")
            size = "phone" if viewport is PHONE else "desktop"
            if size == "phone":
                await expect(conv_item(page, "Sam Rivera").get_by_test_id("avatar")).to_have_text("SR")
                await docs_shot(page, f"docs-{size}-{scheme}-list")
            await conv_item(page, "Weekend trip").click()
            await expect(message(page, "and snacks")).to_be_visible()
            # Uma's picture, drawn from her avatar space, is there before the screenshot
            picture = message(page, "Me! I can bring the kayak").get_by_test_id("avatar").locator("img")
            await expect(picture).to_have_attribute("src", re.compile(r"^https?://"))
            await page.wait_for_function("img => img.complete && img.naturalWidth === 96", arg=await picture.element_handle())
            if size == "desktop":
                await docs_shot(page, f"docs-{size}-{scheme}-group")
            await (page.get_by_test_id("back").click() if size == "phone" else asyncio.sleep(0))
            await conv_item(page, "Sam Rivera").click()
            await expect(message(page, "I'll pick you up")).to_be_visible()
            await expect(message(page, "I'll pick you up at 7:45").get_by_test_id("edited")).to_be_visible()
            await expect(message(page, "Perfect. Leaving at 8?").get_by_test_id("quote-text")).to_have_text("Sunny all weekend")
            await docs_shot(page, f"docs-{size}-{scheme}-chat")
            if size == "desktop" and scheme == "light":
                await page.get_by_test_id("open-settings").click()
                await expect(page.get_by_test_id("profile-nickname")).to_have_value("Tea Lindqvist")
                await docs_shot(page, "docs-desktop-light-settings")
            await page.context.close()
    finally:
        await sam.close()
        await uma.close()


async def docs_shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    """A screenshot of what the screen shows (not the full page), for the docs."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.mouse.move(0, 0)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
