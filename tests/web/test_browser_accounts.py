"""The web app's accounts, group consent, replies and edits, in a real browser against a
real ``im serve`` (the set-up of test_browser.py: Debian's chromium through Playwright; the
other party is a Python SDK client on the same node).

A profile is changed in the settings dialog (nickname, bio, an uploaded picture) and
others' changes show live; a deleted account shows as "Deleted user" with its messages
kept; a password change signs the other browser out and says why; an account is deleted
from the dialog; "who can add me to groups" turns adds into invitations that are accepted
or declined live, and the creator is told who was added and who was invited; a message is
replied to and edited from its action menu, others' edits show live and after a reconnect.
Screenshots go to <repo>/test-artifacts/web/ as in test_browser.py."""
from __future__ import annotations

import asyncio
import re
from pathlib import Path

from harness import ServeProcess
from playwright.async_api import expect
from test_browser import (  # noqa: F401  (node and browser: the fixtures)
    PASSWORD, PHONE, Network, befriend, browser, conv_item, log_in, long_press, message, node, open_aged_chat, open_menu,
    open_page, png, register, sdk_user, shot, start_node, unique,
)

from edgeim.core_ext.protocol import Op
from edgeim.sdk import Client

#: a picture drawn from the node (a download grant's URL)
GRANTED = re.compile(r"^https?://")


async def log_in_with(page, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    await page.get_by_test_id("mode-login").click()
    await page.get_by_test_id("username").fill(username)
    await page.get_by_test_id("password").fill(password)
    await page.get_by_test_id("auth-submit").click()


async def open_settings(page) -> None:  # type: ignore[no-untyped-def]
    await page.get_by_test_id("open-settings").click()
    await expect(page.get_by_test_id("settings")).to_be_visible()


async def next_event(client: Client, op: Op):  # type: ignore[no-untyped-def]
    """The next push of kind `op` on a Python SDK client's events (others skipped)."""
    while True:
        kind, body = await asyncio.wait_for(client.events.get(), 15)
        if kind == op:
            return body


async def test_a_profile_is_changed_in_settings_and_others_changes_show_live(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    bob, bob_name, bob_id = await sdk_user(node, "Bob")
    try:
        page = await open_page(browser, node)
        alice_name = unique("alice")
        await register(page, alice_name, "Alice")
        alice_id = int((await bob.user_find(alice_name)).user)
        await bob.friend_request(alice_id, "hi")
        await page.get_by_test_id("tab-contacts").click()
        await page.get_by_test_id("accept-request").click()
        await expect(page.get_by_test_id("friend-name")).to_have_text("Bob")
        await bob.send(alice_id, "hello from bob")
        await page.get_by_test_id("tab-chats").click()
        await conv_item(page, "Bob").click()
        await expect(message(page, "hello from bob")).to_be_visible()

        # Alice's profile: a new nickname and bio, then a picture uploaded from her computer
        await open_settings(page)
        await expect(page.get_by_test_id("profile-nickname")).to_have_value("Alice")
        await page.get_by_test_id("profile-nickname").fill("Alice Liddell")
        await page.get_by_test_id("profile-bio").fill("down the rabbit hole")
        await page.get_by_test_id("profile-save").click()
        await expect(page.get_by_test_id("info").filter(has_text="Profile saved")).to_be_visible()
        await expect(page.get_by_test_id("me")).to_have_text("Alice Liddell")
        await page.get_by_test_id("avatar-file").set_input_files(
            files=[{"name": "me.png", "mimeType": "image/png", "buffer": png(64, 64, (200, 80, 40))}])
        await expect(page.get_by_test_id("info").filter(has_text="Picture changed")).to_be_visible()
        await expect(page.get_by_test_id("settings").get_by_test_id("avatar").locator("img")).to_have_attribute("src", GRANTED)
        await shot(page, "accounts-01-settings")
        await page.get_by_test_id("settings-close").click()
        await expect(page.get_by_test_id("settings")).to_have_count(0)
        # her own header shows the picture, drawn from the avatar space through a download grant
        await expect(page.get_by_test_id("open-settings").get_by_test_id("avatar").locator("img")).to_have_attribute("src", GRANTED)
        picture = page.get_by_test_id("open-settings").get_by_test_id("avatar").locator("img")
        await page.wait_for_function("img => img.complete && img.naturalWidth === 64", arg=await picture.element_handle())
        # the server has it: Bob sees the new name, bio and an avatar key
        seen = (await bob.users([alice_id]))[0]
        assert (seen.nickname, seen.bio) == ("Alice Liddell", "down the rabbit hole")
        assert seen.avatar and not seen.avatar.startswith("https://")

        # a picture's link that is not https is refused before asking the server
        await open_settings(page)
        await page.get_by_test_id("avatar-url").fill("ftp://example.com/a.png")
        await page.get_by_test_id("profile-save").click()
        await expect(page.get_by_test_id("error")).to_contain_text("https:// link")
        await page.get_by_test_id("settings-close").click()

        # Bob changes his name and picture (an https link): Alice's list, chat and message rows follow live
        await bob.profile_set(nickname="Robert", avatar="https://example.invalid/bob.png")
        await expect(page.get_by_test_id("chat-title")).to_have_text("Robert")
        await expect(conv_item(page, "Robert").get_by_test_id("avatar").locator("img")).to_have_attribute(
            "src", "https://example.invalid/bob.png")
        await expect(message(page, "hello from bob").get_by_test_id("msg-from")).to_have_text("Robert")

        # his profile card, from the chat's header: name, username and bio, kept live
        await page.get_by_test_id("chat-who").click()
        card = page.get_by_test_id("profile-card")
        await expect(card.get_by_test_id("profile-name")).to_have_text("Robert")
        await expect(card.get_by_test_id("profile-username")).to_have_text(f"@{bob_name}")
        await expect(card.get_by_test_id("profile-card-bio")).to_have_text("No bio.")
        await bob.profile_set(bio="sailing, mostly")
        await expect(card.get_by_test_id("profile-card-bio")).to_have_text("sailing, mostly")
        await shot(page, "accounts-09-profile-card")
        await page.keyboard.press("Escape")
        await expect(card).to_have_count(0)

        # Bob deletes his account: a deleted user, his message kept, nobody to write to
        await bob.account_delete(PASSWORD)
        await expect(page.get_by_test_id("chat-title")).to_have_text("Deleted user")
        await expect(message(page, "hello from bob")).to_be_visible()
        await expect(message(page, "hello from bob").get_by_test_id("msg-from")).to_have_text("Deleted user")
        await expect(page.get_by_test_id("deleted-bar")).to_be_visible()
        await expect(page.get_by_test_id("composer")).to_have_count(0)
        await page.get_by_test_id("chat-who").click()
        await expect(page.get_by_test_id("profile-card").get_by_test_id("profile-card-bio")).to_have_text(
            "This account was deleted.")
        await page.get_by_test_id("profile-close").click()
        await expect(page.get_by_test_id("profile-card")).to_have_count(0)
        await expect(conv_item(page, "Deleted user").get_by_test_id("avatar").locator("img")).to_have_count(0)
        # and a reload still says so (USERS: deleted)
        await page.reload()
        await expect(conv_item(page, "Deleted user")).to_be_visible()
    finally:
        await bob.close()



async def test_a_password_change_signs_the_other_browser_out_and_an_account_is_deleted(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    kit, _, kit_id = await sdk_user(node, "Kit")
    try:
        first = await open_page(browser, node)
        second = await open_page(browser, node)  # another browser context: another browser
        pat_name = unique("pat")
        await register(first, pat_name, "Pat")
        await log_in(second, pat_name, "Pat")
        pat_id = int((await kit.user_find(pat_name)).user)
        await kit.friend_request(pat_id)
        await first.get_by_test_id("tab-contacts").click()
        await first.get_by_test_id("accept-request").click()
        await expect(first.get_by_test_id("friend-name")).to_have_text("Kit")
        await kit.send(pat_id, "a message Kit keeps")

        # a wrong current password changes nothing, and says so
        await open_settings(first)
        await first.get_by_test_id("old-password").fill("not-the-password")
        await first.get_by_test_id("new-password").fill("a-new-secret")
        await first.get_by_test_id("repeat-password").fill("a-new-secret")
        await first.get_by_test_id("password-change").click()
        await expect(first.get_by_test_id("error")).to_have_text(re.compile("The current password is wrong"))
        await expect(first.get_by_test_id("error")).to_have_attribute("data-code", "2001")
        await expect(second.get_by_test_id("me")).to_have_text("Pat")
        # two new passwords that differ are caught before asking
        await first.get_by_test_id("old-password").fill(PASSWORD)
        await first.get_by_test_id("repeat-password").fill("a-new-secreT")
        await first.get_by_test_id("password-change").click()
        await expect(first.get_by_test_id("error").filter(has_text="not the same")).to_be_visible()

        # the change: this browser stays, the other one is signed out and told why
        await first.get_by_test_id("repeat-password").fill("a-new-secret")
        await first.get_by_test_id("password-change").click()
        await expect(first.get_by_test_id("info").filter(has_text="Password changed")).to_contain_text(
            "other session was signed out")
        await expect(second.get_by_test_id("auth-form")).to_be_visible()
        await expect(second.get_by_test_id("error")).to_contain_text("password was changed on another device")
        await shot(second, "accounts-02-signed-out-password")
        # this browser's stored token is the fresh one: a reload stays signed in
        await first.reload()
        await expect(first.get_by_test_id("me")).to_have_text("Pat")
        # the other browser: the old password no longer works, the new one does
        await log_in_with(second, pat_name, PASSWORD)
        await expect(second.get_by_test_id("error").filter(has_text="Wrong username or password")).to_be_visible()
        await log_in_with(second, pat_name, "a-new-secret")
        await expect(second.get_by_test_id("me")).to_have_text("Pat")

        # deleting the account: the warning says what stays; a wrong password deletes nothing
        await open_settings(second)
        await expect(second.get_by_test_id("delete-warning")).to_contain_text("stay in the others' conversations")
        await second.get_by_test_id("delete-password").fill(PASSWORD)
        await second.get_by_test_id("delete-account").click()
        await expect(second.get_by_test_id("error")).to_have_text(re.compile("The password is wrong. The account was not deleted"))
        await expect(second.get_by_test_id("settings")).to_be_visible()
        await shot(second, "accounts-03-delete")
        await second.get_by_test_id("delete-password").fill("a-new-secret")
        await second.get_by_test_id("delete-account").click()
        await expect(second.get_by_test_id("auth-form")).to_be_visible()
        await expect(second.get_by_test_id("info")).to_have_text(re.compile("Your account was deleted"))
        # the first browser is signed out with the reason; logging in again is refused in words
        await expect(first.get_by_test_id("auth-form")).to_be_visible()
        await expect(first.get_by_test_id("error")).to_contain_text("this account was deleted")
        await log_in_with(first, pat_name, "a-new-secret")
        await expect(first.locator("[data-testid=error][data-code='2007']")).to_have_text(re.compile("This account was deleted"))
        # Kit keeps his copy of the conversation, from a deleted user
        page = await kit.history(f"p{min(kit_id, pat_id)}_{max(kit_id, pat_id)}")
        assert [m.content for m in page.msgs] == ["a message Kit keeps"]
        assert (await kit.users([pat_id]))[0].deleted
    finally:
        await kit.close()



async def test_group_consent_turns_adds_into_invitations_answered_live(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    dev, _, dev_id = await sdk_user(node, "Dev")
    eve, _, eve_id = await sdk_user(node, "Eve")
    try:
        page = await open_page(browser, node)
        cat_name = unique("cat")
        await register(page, cat_name, "Cat")
        cat_id = int((await dev.user_find(cat_name)).user)
        # Cat lets nobody add her to a group at once
        await open_settings(page)
        await expect(page.get_by_test_id("group-add-anyone")).to_be_checked()
        await page.get_by_test_id("group-add-nobody").check()
        await expect(page.get_by_test_id("group-add-nobody")).to_be_checked()
        await page.get_by_test_id("settings-close").click()
        # the server has it: Dev's add becomes an invitation, which Cat sees live under Contacts
        created = await dev.group_create("Book club", [cat_id])
        assert [int(u) for u in created.invited] == [cat_id] and list(created.added) == []
        await expect(page.get_by_test_id("info").filter(has_text="Dev invited you to Book club")).to_be_visible()
        await expect(page.get_by_test_id("requests-badge")).to_have_text("1")
        await page.get_by_test_id("tab-contacts").click()
        invitation = page.get_by_test_id("group-invitation")
        await expect(invitation.get_by_test_id("invitation-group")).to_have_text("Book club")
        await expect(invitation.get_by_test_id("invitation-from")).to_contain_text("Dev invited you")
        await shot(page, "accounts-04-invitation")
        await invitation.get_by_test_id("accept-invitation").click()
        await expect(page.get_by_test_id("group-invitation")).to_have_count(0)
        await expect(page.get_by_test_id("info").filter(has_text="You joined Book club")).to_be_visible()
        await page.get_by_test_id("tab-chats").click()
        await expect(conv_item(page, "Book club")).to_be_visible()
        assert cat_id in [int(m.user) for m in await dev.group_members(int(created.group))]

        # a second invitation, declined: gone, and Cat is no member
        other = await dev.group_create("Chess", [cat_id])
        await page.get_by_test_id("tab-contacts").click()
        await expect(page.get_by_test_id("invitation-group")).to_have_text("Chess")
        await page.get_by_test_id("decline-invitation").click()
        await expect(page.get_by_test_id("group-invitation")).to_have_count(0)
        await expect(page.get_by_test_id("requests-badge")).to_have_count(0)
        assert cat_id not in [int(m.user) for m in await dev.group_members(int(other.group))]

        # Cat creates a group with two friends: Dev (anyone may add him) is added, Eve (nobody)
        # is invited, and the app tells Cat which is which
        await eve.settings(group_add="nobody")
        for friend, friend_id in ((dev, dev_id), (eve, eve_id)):
            await friend.friend_request(cat_id)
            await page.get_by_test_id("friend-request").first.get_by_test_id("accept-request").click()
        await expect(page.get_by_test_id("friend")).to_have_count(2)
        await page.get_by_test_id("group-name").fill("Picnic")
        for pick in await page.get_by_test_id("group-pick").all():
            await pick.locator("input").check()
        await page.get_by_test_id("group-create").click()
        told = page.get_by_test_id("info").filter(has_text="Picnic")
        await expect(told).to_contain_text("Dev was added to Picnic.")
        await expect(told).to_contain_text("Eve was invited: they join once they accept.")
        await expect(page.get_by_test_id("chat-title")).to_have_text("Picnic")
        invited = await eve.group_invitations()
        assert [int(i.inviter) for i in invited] == [cat_id]
        # inviting from the members panel tells the same
        await eve.group_invitation_decline(int(invited[0].group))
        await page.get_by_test_id("members-toggle").click()
        await expect(page.get_by_test_id("member")).to_have_count(2)
        await page.get_by_test_id("invite-pick").filter(has_text="Eve").locator("input").check()
        await page.get_by_test_id("invite").click()
        await expect(page.get_by_test_id("info").filter(has_text=re.compile(r"^Eve was invited"))).to_be_visible()
        await expect(page.get_by_test_id("member")).to_have_count(2)
        assert len(await eve.group_invitations()) == 1
    finally:
        await dev.close()
        await eve.close()


def text_message(page, text: str):  # type: ignore[no-untyped-def]
    """The message whose own text is exactly `text` (not a reply quoting it)."""
    return page.get_by_test_id("message").filter(
        has=page.get_by_test_id("msg-text").filter(has_text=re.compile("^" + re.escape(text) + "$")))


def filler(n: int) -> str:
    return f"filler #{n:02d}."


async def test_replies_and_edits_from_the_action_menu_live_and_after_a_reconnect(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    bob, _, bob_id = await sdk_user(node, "Bob")
    try:
        # the page's WebSocket goes through a route this test can cut, as a network drop does
        network = Network()
        page = await open_page(browser, node, network=network)
        alice_name = unique("alice")
        await register(page, alice_name, "Alice")
        alice_id = int((await bob.user_find(alice_name)).user)
        await bob.friend_request(alice_id)
        await page.get_by_test_id("tab-contacts").click()
        await page.get_by_test_id("accept-request").click()
        await expect(page.get_by_test_id("friend-name")).to_have_text("Bob")

        # Bob quotes a message of his own from further back than the first page
        original = await bob.send(alice_id, "the original question")
        fillers = [await bob.send(alice_id, filler(n)) for n in range(35)]
        await bob.send(alice_id, "answering myself", reply_to=original.msg_id)
        conv = original.conv
        await page.get_by_test_id("tab-chats").click()
        await conv_item(page, "Bob").click()
        answer = message(page, "answering myself")
        await expect(answer.get_by_test_id("quote-from")).to_have_text("Bob")
        await expect(answer.get_by_test_id("quote-text")).to_have_text("the original question")
        await expect(text_message(page, "the original question")).to_have_count(0)  # not loaded yet
        # a click on the quote pages back to the original and shows it
        await answer.get_by_test_id("quote").click()
        await expect(text_message(page, "the original question")).to_be_in_viewport()
        await expect(text_message(page, "the original question")).to_have_class(re.compile(r"\bhighlighted\b"))

        # Alice replies from a message's menu; the composer shows what she quotes, and can drop it
        await open_menu(text_message(page, filler(34)), "msg-menu")
        await expect(text_message(page, filler(34)).get_by_test_id("edit")).to_have_count(0)  # not hers
        await text_message(page, filler(34)).get_by_test_id("reply").click()
        await expect(page.get_by_test_id("reply-bar")).to_contain_text("Reply to Bob")
        await expect(page.get_by_test_id("compose-quote")).to_have_text(filler(34))
        await page.get_by_test_id("compose-cancel").click()
        await expect(page.get_by_test_id("reply-bar")).to_have_count(0)
        await open_menu(text_message(page, filler(34)), "msg-menu")
        await text_message(page, filler(34)).get_by_test_id("reply").click()
        await page.get_by_test_id("composer").fill("my answer")
        await shot(page, "accounts-05-replying")
        await page.get_by_test_id("composer").press("Enter")
        mine = message(page, "my answer")
        await expect(mine.get_by_test_id("quote-text")).to_have_text(filler(34))
        await expect(page.get_by_test_id("reply-bar")).to_have_count(0)
        pushed = await asyncio.wait_for(bob.pushes.get(), 15)
        assert pushed.content == "my answer" and pushed.reply is not None
        assert int(pushed.reply.id) == int(fillers[34].msg_id)

        # Alice edits her message from its menu: in the composer, then "edited"; Bob gets the edit
        await open_menu(mine, "msg-menu")
        await mine.get_by_test_id("edit").click()
        await expect(page.get_by_test_id("editing-bar")).to_be_visible()
        await expect(page.get_by_test_id("composer")).to_have_value("my answer")
        await expect(page.get_by_test_id("send")).to_have_text("Save")
        await page.get_by_test_id("composer").fill("my corrected answer")
        await page.get_by_test_id("composer").press("Enter")
        fixed = message(page, "my corrected answer")
        await expect(fixed.get_by_test_id("edited")).to_be_visible()
        await expect(fixed.get_by_test_id("quote-text")).to_have_text(filler(34))
        await expect(message(page, "my answer")).to_have_count(0)
        await expect(page.get_by_test_id("editing-bar")).to_have_count(0)
        edit = await next_event(bob, Op.EDIT_PUSH)
        assert edit.content == "my corrected answer" and edit.seq == pushed.seq
        # Up in the empty composer edits her newest message; Escape drops the edit
        await page.get_by_test_id("composer").press("ArrowUp")
        await expect(page.get_by_test_id("editing-bar")).to_contain_text("my corrected answer")
        await page.get_by_test_id("composer").press("Escape")
        await expect(page.get_by_test_id("editing-bar")).to_have_count(0)
        await expect(page.get_by_test_id("composer")).to_have_value("")

        # Bob edits a message: Alice's open chat follows live, marked "edited"
        await bob.edit(conv, fillers[33].seq, "filler 33, reworded")
        await expect(message(page, "filler 33, reworded").get_by_test_id("edited")).to_be_visible()
        await shot(page, "accounts-06-edited")
        # Bob recalls the message Alice quoted: her reply's quote says so
        await bob.recall(conv, fillers[34].seq)
        await expect(fixed.get_by_test_id("quote-text")).to_have_text("message recalled")

        # the network drops; Bob edits meanwhile; once back, the SDK's catch-up shows the edit
        await network.drop()
        await expect(page.get_by_test_id("connection")).to_be_visible()
        await bob.edit(conv, fillers[32].seq, "filler 32, edited while Alice was away")
        network.online = True
        await expect(page.get_by_test_id("connection")).to_have_count(0)
        away = message(page, "filler 32, edited while Alice was away")
        await expect(away.get_by_test_id("edited")).to_be_visible()
        await expect(message(page, filler(32))).to_have_count(0)
        await page.context.close()
    finally:
        await bob.close()


async def test_edit_is_offered_only_within_the_edit_window(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    short = start_node(tmp_path, edit_window=1)
    try:
        page, old = await open_aged_chat(browser, short)
        await open_menu(old, "msg-menu")
        await expect(old.get_by_test_id("reply")).to_be_visible()
        await expect(old.get_by_test_id("edit")).to_have_count(0)
        # nor does Up start editing it
        await page.keyboard.press("Escape")
        await page.get_by_test_id("composer").press("ArrowUp")
        await expect(page.get_by_test_id("editing-bar")).to_have_count(0)
        # a fresh one is editable
        await page.get_by_test_id("composer").fill("just now")
        await page.get_by_test_id("composer").press("Enter")
        await open_menu(message(page, "just now"), "msg-menu")
        await expect(message(page, "just now").get_by_test_id("edit")).to_be_visible()
    finally:
        short.stop()


async def test_settings_and_replies_on_a_phone(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    dan, _, dan_id = await sdk_user(node, "Dan")
    try:
        phone = await open_page(browser, node, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
        erin_name = unique("erin")
        await register(phone, erin_name, "Erin")
        erin_id = int((await dan.user_find(erin_name)).user)
        await dan.friend_request(erin_id)
        await phone.get_by_test_id("tab-contacts").tap()
        await phone.get_by_test_id("accept-request").tap()
        await expect(phone.get_by_test_id("friend-name")).to_have_text("Dan")
        await dan.send(erin_id, "lunch at noon?")

        # the settings fill the phone's screen, nothing wider than it
        await phone.get_by_test_id("open-settings").tap()
        await expect(phone.get_by_test_id("settings")).to_be_visible()
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        box = await phone.get_by_test_id("settings").bounding_box()
        assert box is not None and box["width"] <= PHONE["width"]
        await phone.get_by_test_id("profile-bio").fill("on the go")
        await phone.get_by_test_id("profile-save").tap()
        await expect(phone.get_by_test_id("info").filter(has_text="Profile saved")).to_be_visible()
        await shot(phone, "accounts-07-phone-settings")
        await phone.get_by_test_id("settings-close").tap()
        assert (await dan.users([erin_id]))[0].bio == "on the go"

        # a long press on a message, Reply, and the answer quotes it
        await phone.get_by_test_id("tab-chats").tap()
        await conv_item(phone, "Dan").tap()
        await long_press(phone, message(phone, "lunch at noon?").get_by_test_id("msg-text"))
        await message(phone, "lunch at noon?").get_by_test_id("reply").tap()
        await expect(phone.get_by_test_id("reply-bar")).to_contain_text("lunch at noon?")
        await phone.get_by_test_id("composer").fill("yes!")
        await phone.get_by_test_id("send").tap()
        await expect(message(phone, "yes!").get_by_test_id("quote-text")).to_have_text("lunch at noon?")
        assert await phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await shot(phone, "accounts-08-phone-reply")
    finally:
        await dan.close()


async def test_a_password_changed_while_the_browser_was_offline_signs_it_out_on_reconnect(node: ServeProcess, browser) -> None:  # type: ignore[no-untyped-def]
    network = Network()
    page = await open_page(browser, node, network=network)
    gil_name = unique("gil")
    await register(page, gil_name, "Gil")
    # the browser drops off the network; meanwhile the password is changed on a phone
    await network.drop()
    await expect(page.get_by_test_id("connection")).to_be_visible()
    phone = Client(node.url)
    await phone.connect()
    try:
        await phone.login(gil_name, PASSWORD, "ios")
        await phone.password_change(PASSWORD, "another-secret")
    finally:
        await phone.close()
    # back online, its token is refused: the login screen, saying why, and the token forgotten
    network.online = True
    await expect(page.get_by_test_id("auth-form")).to_be_visible()
    await expect(page.get_by_test_id("error")).to_contain_text("the password may have been changed on another device")
    await page.reload()
    await expect(page.get_by_test_id("auth-form")).to_be_visible()
    await log_in_with(page, gil_name, "another-secret")
    await expect(page.get_by_test_id("me")).to_have_text("Gil")
    await page.context.close()
