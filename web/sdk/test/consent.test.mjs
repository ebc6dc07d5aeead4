// Who may add whom to a group, against a real `im serve` with the product default
// (group_add_default = friends): a stranger's add becomes an invitation the invitee lists,
// accepts or declines; the groupAdd setting; the bound on pending invitations.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode } from "../dist/index.js";
import { nextEvent, nodeForThisFile } from "./helpers.mjs";

// the Server's env sets "anyone" for the other suites: this file says the product default
const node = nodeForThisFile({ IM_GROUP_ADD_DEFAULT: "friends", IM_GROUP_INVITES_HELD: "2" });
const user = node.user;

test("a stranger's group invites a friends-only user, who is no member until accepting", async () => {
  const stranger = await user();
  const invitee = await user();
  assert.equal((await invitee.client.settings()).groupAdd, "friends");
  const invited = nextEvent(invitee.client, "group", (e) => e.event === "invited");

  const created = await stranger.client.groupCreate("trap", [invitee.id]);

  assert.deepEqual([created.added, created.invited, created.members], [[], [invitee.id], 1]);
  const event = await invited;
  assert.deepEqual([event.group, event.actor, event.users], [created.group, stranger.id, [invitee.id]]);
  assert.deepEqual(await invitee.client.groups(), []);
  await assert.rejects(invitee.client.groupMembersPage(created.group), { code: ErrorCode.FORBIDDEN });
  const [invitation] = await invitee.client.groupInvitations();
  assert.deepEqual([invitation.group, invitation.inviter], [created.group, stranger.id]); // bigints
  assert.ok(invitation.expiresAt > invitation.ts);

  const joined = nextEvent(stranger.client, "group", (e) => e.event === "joined");
  const info = await invitee.client.groupInvitationAccept(created.group);
  assert.deepEqual([info.role, info.members], ["member", 2]);
  assert.deepEqual((await joined).users, [invitee.id]);
  assert.deepEqual(await invitee.client.groupInvitations(), []);
  assert.deepEqual((await invitee.client.groups()).map((g) => g.group), [created.group]);
});

test("decline, 'nobody' even for a friend, 'anyone' for a stranger, and the bound", async () => {
  const owner = await user();
  const careful = await user();
  const relaxed = await user();
  await owner.client.friendRequest(careful.id);
  await careful.client.friendAccept(owner.id);
  assert.equal((await careful.client.settings({ groupAdd: "nobody" })).groupAdd, "nobody");
  assert.equal((await relaxed.client.settings({ groupAdd: "anyone" })).groupAdd, "anyone");

  const group = (await owner.client.groupCreate("club")).group;
  const done = await owner.client.groupInvite(group, [careful.id, relaxed.id]);
  assert.deepEqual([done.users, done.invited], [[relaxed.id], [careful.id]]);

  await careful.client.groupInvitationDecline(group);
  assert.deepEqual(await careful.client.groupInvitations(), []);
  await assert.rejects(careful.client.groupInvitationAccept(group), { code: ErrorCode.NOT_FOUND });

  // two pending at most (IM_GROUP_INVITES_HELD): the third add is refused whole
  await owner.client.groupCreate("one", [careful.id]);
  await owner.client.groupCreate("two", [careful.id]);
  await assert.rejects(owner.client.groupCreate("three", [careful.id]), {
    code: ErrorCode.INVITATIONS_FULL,
    name: "INVITATIONS_FULL",
  });
  const page = await careful.client.groupInvitationsPage(0n, 1);
  assert.equal(page.invitations.length, 1);
  assert.equal(page.hasMore, true);
  assert.equal((await owner.client.groups()).length, 3); // club, one, two: no "three"
});
