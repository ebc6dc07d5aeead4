"""What the web app does to messages beyond sending them, in a real browser against a real
``im serve`` (the set-up of test_browser.py: Debian's chromium through Playwright; the other
parties are Python SDK clients on the same node).

Reactions from a message's menu and its emoji picker, chips with counts that toggle and
follow others live and come back from history; a reaction over the server's limit told in
words; messages pinned and unpinned from the menu and by the other user live, the pin bar
and the list of pins, a recall taking a pin away; Forward to a friend and to a group, with
and without the sender's name; Delete for me and Clear history behind a confirmation, on
this browser and live on another browser of the same account, kept after a reload; the
same menu on a phone; what changed while the browser was offline (reactions, a pin, a
deletion and a clear on the user's phone) shows once it is back. Screenshots go to <repo>/test-artifacts/web/ as in test_browser.py."""
from __future__ import annotations

import re

from pathlib import Path

from harness import ServeProcess
from playwright.async_api import expect
from test_browser import (  # noqa: F401  (node and browser: the fixtures)
    PASSWORD, PHONE, Network, befriend, browser, conv_item, docs_shot, log_in, long_press, message, next_message, node,
    open_menu, open_page, sdk_user, shot, start_node,
)

from edgeim.sdk import Client


def pconv(a: int, b: int) -> str:
    return f"p{min(a, b)}_{max(a, b)}"


def chip(item, emoji: str):  # type: ignore[no-untyped-def]
    """A message's reaction chip for one emoji."""
    return item.locator(f'[data-testid="reaction"][data-emoji="{emoji}"]')


async def test_reactions_and_message_pins(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    bob, _, bob_id = await sdk_user(node, "Bob")
    ann, ann_name, ann_id = await sdk_user(node, "Ann")
    try:
        await befriend(bob, ann, ann_id, bob_id)
        conv = pconv(ann_id, bob_id)
        lunch = await bob.send(ann_id, "lunch at noon?")
        later = await bob.send(ann_id, "or at one?")
        await ann.close()

        page = await open_page(browser, node)
        await log_in(page, ann_name, "Ann")
        await conv_item(page, "Bob").click()
        first = message(page, "lunch at noon?")
        await expect(first).to_be_visible()
        await expect(first.get_by_test_id("reaction")).to_have_count(0)

        # a reaction from the menu's row: a chip with its count, marked as mine; Bob's
        # history has it
        await open_menu(first, "msg-menu")
        await first.get_by_test_id("react").and_(page.locator('[data-emoji="👍"]')).click()
        await expect(chip(first, "👍").get_by_test_id("reaction-count")).to_have_text("1")
        await expect(chip(first, "👍")).to_have_class(re.compile(r"\bmine\b"))
        await expect(first.get_by_test_id("menu")).to_have_count(0)
        reacted = (await bob.history(conv)).reactions
        assert [(r.seq, [(x.emoji, x.count, x.users) for x in r.reactions]) for r in reacted] == \
            [(lunch.seq, [("👍", 1, [ann_id])])]

        # Bob reacts: live, his ❤️ is not mine, his 👍 makes two
        await bob.react(conv, lunch.seq, "❤️")
        await bob.react(conv, lunch.seq, "👍")
        await expect(chip(first, "❤️").get_by_test_id("reaction-count")).to_have_text("1")
        await expect(chip(first, "❤️")).not_to_have_class(re.compile(r"\bmine\b"))
        await expect(chip(first, "👍").get_by_test_id("reaction-count")).to_have_text("2")
        await expect(first.get_by_test_id("reaction")).to_have_count(2)

        # a click on my chip takes mine back: Bob's stays, no longer marked as mine
        await chip(first, "👍").click()
        await expect(chip(first, "👍").get_by_test_id("reaction-count")).to_have_text("1")
        await expect(chip(first, "👍")).not_to_have_class(re.compile(r"\bmine\b"))
        # and a click on Bob's ❤️ adds mine to it
        await chip(first, "❤️").click()
        await expect(chip(first, "❤️").get_by_test_id("reaction-count")).to_have_text("2")
        await expect(chip(first, "❤️")).to_have_class(re.compile(r"\bmine\b"))

        # the emoji picker behind "+" reacts with any emoji
        await open_menu(first, "msg-menu")
        await first.get_by_test_id("react-more").click()
        await first.get_by_test_id("react-picker").get_by_test_id("react-emoji").filter(has_text="🎉").click()
        await expect(chip(first, "🎉")).to_have_class(re.compile(r"\bmine\b"))

        # a reload shows the reactions from the history page, in the server's order (by each
        # emoji's oldest reaction still there: Bob's ❤️ came before his 👍)
        await page.reload()
        await conv_item(page, "Bob").click()
        await expect(first.get_by_test_id("reaction")).to_have_count(3)
        assert await first.get_by_test_id("reaction").evaluate_all("els => els.map(e => e.dataset.emoji)") == ["❤️", "👍", "🎉"]
        await expect(chip(first, "❤️")).to_have_class(re.compile(r"\bmine\b"))
        await expect(chip(first, "👍")).not_to_have_class(re.compile(r"\bmine\b"))

        # my third reaction is taken; a fourth is over the server's limit (3 a user): told in words
        await open_menu(first, "msg-menu")
        await first.get_by_test_id("react").and_(page.locator('[data-emoji="😮"]')).click()
        await expect(chip(first, "😮")).to_have_class(re.compile(r"\bmine\b"))
        await open_menu(first, "msg-menu")
        await first.get_by_test_id("react").and_(page.locator('[data-emoji="😢"]')).click()
        error = page.get_by_test_id("error")
        await expect(error).to_have_attribute("data-code", "3023")
        await expect(error).to_contain_text("as many reactions as it can take")
        await expect(chip(first, "😢")).to_have_count(0)
        await expect(first.get_by_test_id("reaction")).to_have_count(4)

        # pin from the menu: the bar shows it; Bob's PINS has it
        second = message(page, "or at one?")
        await expect(page.get_by_test_id("pins-bar")).to_have_count(0)
        await open_menu(second, "msg-menu")
        await second.get_by_test_id("pin-message").click()
        bar = page.get_by_test_id("pins-bar")
        await expect(bar.get_by_test_id("pin-text")).to_have_text("Bob: or at one?")
        assert [p.seq for p in (await bob.pins(conv)).pins] == [later.seq]
        await open_menu(second, "msg-menu")
        await expect(second.get_by_test_id("unpin-message")).to_be_visible()
        await expect(second.get_by_test_id("pin-message")).to_have_count(0)
        await page.keyboard.press("Escape")

        # Bob pins the first one: live, the bar shows the newest pin, and the list both
        await bob.pin_message(conv, lunch.seq)
        await expect(bar.get_by_test_id("pin-text")).to_have_text("Bob: lunch at noon?")
        await expect(bar).to_contain_text("Pinned message (2)")
        await docs_shot(page, "docs-desktop-reactions-and-pins")
        await bar.get_by_test_id("pins-all").click()
        items = page.get_by_test_id("pins-dialog").get_by_test_id("pin-item")
        await expect(items.get_by_test_id("pin-item-text")).to_have_text(["lunch at noon?", "or at one?"])
        await shot(page, "desktop-20-pins-list")
        # a pin in the list scrolls to its message and highlights it
        await items.filter(has_text="or at one?").get_by_test_id("pin-open").click()
        await expect(page.get_by_test_id("pins-dialog")).to_have_count(0)
        await expect(second).to_have_class(re.compile(r"\bhighlighted\b"))
        # so does the bar
        await bar.get_by_test_id("pin-latest").click()
        await expect(first).to_have_class(re.compile(r"\bhighlighted\b"))

        # Bob unpins his: live, the bar is back to mine
        await bob.unpin_message(conv, lunch.seq)
        await expect(bar.get_by_test_id("pin-text")).to_have_text("Bob: or at one?")
        await expect(bar).not_to_contain_text("(2)")
        # Bob recalls the pinned message: the pin goes with it
        await bob.recall(conv, later.seq)
        await expect(second).to_have_count(0)
        await expect(page.get_by_test_id("pins-bar")).to_have_count(0)
        assert (await bob.pins(conv)).pins == []
        # a recalled message offers neither reactions nor forwarding, but can be deleted for me
        tombstone = page.get_by_test_id("message").filter(has=page.get_by_test_id("recalled"))
        await open_menu(tombstone, "msg-menu")
        await expect(tombstone.get_by_test_id("react-row")).to_have_count(0)
        await expect(tombstone.get_by_test_id("forward")).to_have_count(0)
        await expect(tombstone.get_by_test_id("pin-message")).to_have_count(0)
        await expect(tombstone.get_by_test_id("delete-for-me")).to_be_visible()
    finally:
        await bob.close()


async def test_forward_delete_for_me_and_clear_history(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    bob, _, bob_id = await sdk_user(node, "Bob")
    cat, _, cat_id = await sdk_user(node, "Cat")
    ann, ann_name, ann_id = await sdk_user(node, "Ann")
    try:
        await befriend(bob, ann, ann_id, bob_id)
        await befriend(cat, ann, ann_id, cat_id)
        group = await cat.group_create("Hikers", [ann_id])
        gid = int(group.group)
        conv = pconv(ann_id, bob_id)
        await bob.send(ann_id, "the address is 12 Elm St")
        await bob.send(ann_id, "bring boots")
        await ann.close()

        # Ann on two browsers: the second follows what the first does to her view
        page = await open_page(browser, node)
        await log_in(page, ann_name, "Ann")
        other = await open_page(browser, node)
        await log_in(other, ann_name, "Ann")
        await conv_item(page, "Bob").click()
        await conv_item(other, "Bob").click()
        address = message(page, "the address is 12 Elm St")
        await expect(message(other, "the address is 12 Elm St")).to_be_visible()

        # Forward to a friend: the dialog lists friends and groups; Cat gets a copy that names Bob
        await open_menu(address, "msg-menu")
        await address.get_by_test_id("forward").click()
        dialog = page.get_by_test_id("forward-dialog")
        targets = dialog.get_by_test_id("forward-target")
        await expect(targets.filter(has_text="Cat")).to_be_visible()
        await expect(targets.filter(has_text="Hikers")).to_be_visible()
        await dialog.get_by_test_id("forward-filter").fill("ca")
        await expect(targets.get_by_test_id("forward-target-name")).to_have_text(["Cat"])
        await shot(page, "desktop-21-forward-dialog")
        await targets.filter(has_text="Cat").click()
        await expect(dialog).to_have_count(0)
        await expect(page.get_by_test_id("info").filter(has_text="Forwarded to Cat")).to_be_visible()
        copy = await next_message(cat)
        assert (copy.content, copy.sender, copy.forwarded_from) == ("the address is 12 Elm St", ann_id, bob_id)
        await conv_item(page, "Cat").click()
        forwarded = message(page, "the address is 12 Elm St")
        await expect(forwarded.get_by_test_id("forwarded")).to_have_text("Forwarded from Bob")

        # Forward to the group without the sender's name: "Forwarded" alone
        await open_menu(forwarded, "msg-menu")
        await forwarded.get_by_test_id("forward").click()
        await dialog.get_by_test_id("forward-hide-sender").check()
        await dialog.get_by_test_id("forward-target").filter(has_text="Hikers").click()
        await expect(dialog).to_have_count(0)
        copy = await next_message(cat)
        assert (copy.conv, copy.content, copy.forwarded_from) == (f"g{gid}", "the address is 12 Elm St", -1)
        await conv_item(page, "Hikers").click()
        in_group = message(page, "the address is 12 Elm St")
        await expect(in_group.get_by_test_id("forwarded")).to_have_text("Forwarded")
        # in a group only its owner and admins pin: Ann, a member, sees Cat's pin, no way to unpin
        await cat.pin_message(f"g{gid}", copy.seq)
        await expect(page.get_by_test_id("pins-bar").get_by_test_id("pin-text")).to_have_text("Ann: the address is 12 Elm St")
        await expect(page.get_by_test_id("pin-bar-unpin")).to_have_count(0)
        await open_menu(in_group, "msg-menu")
        await expect(in_group.get_by_test_id("forward")).to_be_visible()
        await expect(in_group.get_by_test_id("pin-message")).to_have_count(0)
        await expect(in_group.get_by_test_id("unpin-message")).to_have_count(0)
        await page.keyboard.press("Escape")

        # Delete for me, after a confirmation; Cancel first changes nothing
        await conv_item(page, "Bob").click()
        await open_menu(address, "msg-menu")
        await address.get_by_test_id("delete-for-me").click()
        confirm = page.get_by_test_id("confirm-dialog")
        await expect(confirm).to_contain_text("Delete this message for you?")
        await confirm.get_by_test_id("confirm-cancel").click()
        await expect(confirm).to_have_count(0)
        await expect(address).to_be_visible()
        await open_menu(address, "msg-menu")
        await address.get_by_test_id("delete-for-me").click()
        await shot(page, "desktop-22-delete-for-me")
        await confirm.get_by_test_id("confirm-ok").click()
        await expect(address).to_have_count(0)
        await expect(message(page, "bring boots")).to_be_visible()
        # gone on her other browser too (the "view" event); Bob keeps it
        await expect(message(other, "the address is 12 Elm St")).to_have_count(0)
        await expect(message(other, "bring boots")).to_be_visible()
        kept = (await bob.history(conv)).msgs
        assert [(m.content, m.hidden) for m in kept] == [("the address is 12 Elm St", False), ("bring boots", False)]
        # a reload reads it as a stub, which is not shown
        await page.reload()
        await conv_item(page, "Bob").click()
        await expect(message(page, "bring boots")).to_be_visible()
        await expect(page.get_by_test_id("message")).to_have_count(1)

        # Clear history from the chat's menu: the chat is empty here and on the other browser
        await page.get_by_test_id("chat-menu").click()
        await page.get_by_test_id("clear-history").click()
        await expect(confirm).to_contain_text("Clear the history of Bob?")
        await confirm.get_by_test_id("confirm-ok").click()
        await expect(page.get_by_test_id("message")).to_have_count(0)
        await expect(page.get_by_test_id("messages")).to_contain_text("No messages yet")
        await expect(other.get_by_test_id("message")).to_have_count(0)
        await expect(conv_item(page, "Bob").get_by_test_id("conv-preview")).to_have_text("")
        assert len((await bob.history(conv)).msgs) == 2  # Bob's view is his own
        # what comes after the clear is shown as usual, and a reload keeps the clear
        await bob.send(ann_id, "see you there")
        await expect(message(page, "see you there")).to_be_visible()
        await expect(message(other, "see you there")).to_be_visible()
        await page.reload()
        await conv_item(page, "Bob").click()
        await expect(message(page, "see you there")).to_be_visible()
        await expect(page.get_by_test_id("message")).to_have_count(1)

        # Clear history from the list's menu too
        await open_menu(conv_item(page, "Cat"), "conv-menu")
        await conv_item(page, "Cat").get_by_test_id("clear-history").click()
        await confirm.get_by_test_id("confirm-ok").click()
        await conv_item(page, "Cat").click()
        await expect(page.get_by_test_id("message")).to_have_count(0)
    finally:
        await bob.close()
        await cat.close()


async def test_reactions_and_forward_on_a_phone(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    dan, _, dan_id = await sdk_user(node, "Dan")
    eve, eve_name, eve_id = await sdk_user(node, "Eve")
    fay, _, fay_id = await sdk_user(node, "Fay")
    try:
        await befriend(dan, eve, eve_id, dan_id)
        await befriend(fay, eve, eve_id, fay_id)
        sent = await dan.send(eve_id, "photos are up")
        await eve.close()

        phone = await open_page(browser, node, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
        await log_in(phone, eve_name, "Eve")
        await conv_item(phone, "Dan").tap()
        item = message(phone, "photos are up")
        # a long press opens the menu with its reactions row; it fits the screen
        await long_press(phone, item.get_by_test_id("msg-text"))
        await expect(item.get_by_test_id("react-row")).to_be_visible()
        await item.get_by_test_id("react-more").tap()
        await expect(item.get_by_test_id("react-picker")).to_be_visible()
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        menu = await item.get_by_test_id("menu").bounding_box()
        assert menu is not None and menu["x"] >= 0 and menu["x"] + menu["width"] <= PHONE["width"]
        assert menu["y"] >= 0 and menu["y"] + menu["height"] <= PHONE["height"]
        await shot(phone, "phone-20-reactions")
        await item.get_by_test_id("react-emoji").filter(has_text="🔥").tap()
        await expect(chip(item, "🔥")).to_have_class(re.compile(r"\bmine\b"))
        page = await dan.history(pconv(dan_id, eve_id))
        assert [(r.seq, [x.emoji for x in r.reactions]) for r in page.reactions] == [(sent.seq, ["🔥"])]

        # pin it; the bar fits above the chat
        await long_press(phone, item.get_by_test_id("msg-text"))
        await item.get_by_test_id("pin-message").tap()
        await expect(phone.get_by_test_id("pins-bar").get_by_test_id("pin-text")).to_have_text("Dan: photos are up")

        # forward on a phone: the dialog is a sheet at the bottom, inside the screen
        await long_press(phone, item.get_by_test_id("msg-text"))
        await item.get_by_test_id("forward").tap()
        dialog = phone.get_by_test_id("forward-dialog")
        box = await dialog.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(phone, "phone-21-forward")
        await dialog.get_by_test_id("forward-target").filter(has_text="Fay").tap()
        copy = await next_message(fay)
        assert (copy.content, copy.forwarded_from) == ("photos are up", dan_id)
    finally:
        await dan.close()
        await fay.close()


async def test_what_changed_while_offline_shows_after_a_reconnect(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    bob, _, bob_id = await sdk_user(node, "Bob")
    ann, ann_name, ann_id = await sdk_user(node, "Ann")
    try:
        await befriend(bob, ann, ann_id, bob_id)
        conv = pconv(ann_id, bob_id)
        sent = [await bob.send(ann_id, text) for text in ("one", "two", "three", "four")]
        network = Network()

        async def drop() -> None:
            await network.drop()
            await expect(page.get_by_test_id("connection")).to_be_visible()

        page = await open_page(browser, node, network=network)
        await log_in(page, ann_name, "Ann")
        await conv_item(page, "Bob").click()
        await expect(message(page, "four")).to_be_visible()

        # offline: Bob reacts and pins; Ann's phone deletes a message for her
        await drop()
        await bob.react(conv, sent[0].seq, "👍")
        await bob.pin_message(conv, sent[1].seq)
        await ann.delete_for_me(conv, [sent[2].seq])
        network.online = True
        await expect(page.get_by_test_id("connection")).to_have_count(0)
        await expect(chip(message(page, "one"), "👍").get_by_test_id("reaction-count")).to_have_text("1")
        await expect(page.get_by_test_id("pins-bar").get_by_test_id("pin-text")).to_have_text("Bob: two")
        await expect(message(page, "three")).to_have_count(0)
        await expect(page.get_by_test_id("message")).to_have_count(3)
        # the list was read again too (nothing failed on the way back)
        await expect(conv_item(page, "Bob").get_by_test_id("conv-preview")).to_have_text("four")
        await expect(page.get_by_test_id("error")).to_have_count(0)

        # offline again: Bob takes his reaction back, Ann's phone clears the history
        await drop()
        await bob.unreact(conv, sent[0].seq, "👍")
        await ann.clear_history(conv)
        network.online = True
        await expect(page.get_by_test_id("connection")).to_have_count(0)
        await expect(page.get_by_test_id("message")).to_have_count(0)
        await page.context.close()
    finally:
        await bob.close()
        await ann.close()


async def test_a_full_set_of_pins_is_told_in_words(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    small = start_node(tmp_path, max_message_pins=1)
    try:
        gus, _, gus_id = await sdk_user(small, "Gus")
        hal, hal_name, hal_id = await sdk_user(small, "Hal")
        try:
            await befriend(gus, hal, hal_id, gus_id)
            conv = pconv(gus_id, hal_id)
            first = await gus.send(hal_id, "first plan")
            await gus.send(hal_id, "second plan")
            await gus.pin_message(conv, first.seq)
            page = await open_page(browser, small)
            await log_in(page, hal_name, "Hal")
            await conv_item(page, "Gus").click()
            bar = page.get_by_test_id("pins-bar")
            await expect(bar.get_by_test_id("pin-text")).to_have_text("Gus: first plan")
            # the chat holds as many pins as the node allows (1): the refusal says what to do
            second = message(page, "second plan")
            await open_menu(second, "msg-menu")
            await second.get_by_test_id("pin-message").click()
            error = page.get_by_test_id("error")
            await expect(error).to_have_attribute("data-code", "3027")
            await expect(error).to_contain_text("Unpin one first")
            await expect(bar.get_by_test_id("pin-text")).to_have_text("Gus: first plan")
            # unpinning from the bar makes room
            await bar.get_by_test_id("pin-bar-unpin").click()
            await expect(bar).to_have_count(0)
            await open_menu(second, "msg-menu")
            await second.get_by_test_id("pin-message").click()
            await expect(bar.get_by_test_id("pin-text")).to_have_text("Gus: second plan")
            assert [p.seq for p in (await gus.pins(conv)).pins] == [first.seq + 1]
        finally:
            await gus.close()
            await hal.close()
    finally:
        small.stop()
