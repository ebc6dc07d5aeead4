// Friends and groups against a real `im serve`: the friend request flow with its pushes,
// remarks, blocks; a group's life with admin actions (roles, kick, mute, approval, transfer).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode } from "../dist/index.js";
import { newUser, nextEvent, nodeForThisFile } from "./helpers.mjs";

const node = nodeForThisFile();
const { clients } = node;
const user = node.user;

test("friends: request, accept, list, remark, delete, with pushes both ways", async () => {
  const alice = await user();
  const bob = await user();
  const asked = nextEvent(bob.client, "friend", (e) => e.event === "request");
  await alice.client.friendRequest(bob.id, "hi, it's alice");
  const request = await asked;
  assert.equal(request.user, alice.id);
  assert.equal(request.message, "hi, it's alice");
  const pending = await bob.client.friendRequests();
  assert.deepEqual(pending.map((r) => [r.user, r.message]), [[alice.id, "hi, it's alice"]]);

  const accepted = nextEvent(alice.client, "friend", (e) => e.event === "accepted");
  await bob.client.friendAccept(alice.id);
  assert.equal((await accepted).user, bob.id);
  assert.deepEqual((await alice.client.friends()).map((f) => f.user), [bob.id]);
  assert.deepEqual(await bob.client.friendRequests(), []);
  await assert.rejects(alice.client.friendRequest(bob.id), { code: ErrorCode.CONFLICT });

  await alice.client.friendRemark(bob.id, "Bobby");
  const [friend] = await alice.client.friends();
  assert.equal(friend.remark, "Bobby");
  assert.ok(friend.since > 0);

  const deleted = nextEvent(bob.client, "friend", (e) => e.event === "deleted");
  await alice.client.friendDelete(bob.id);
  assert.equal((await deleted).user, alice.id);
  assert.deepEqual(await bob.client.friends(), []);
  await assert.rejects(alice.client.friendRemark(bob.id, "x"), { code: ErrorCode.NOT_FRIENDS });
});

test("friend reject, and blocks (listed) refuse messages and requests until unblocked", async () => {
  const alice = await user();
  const bob = await user();
  await alice.client.friendRequest(bob.id);
  await bob.client.friendReject(alice.id);
  assert.deepEqual(await bob.client.friendRequests(), []);
  await assert.rejects(bob.client.friendAccept(alice.id), { code: ErrorCode.NOT_FOUND });

  await bob.client.block(alice.id);
  assert.deepEqual(await bob.client.blocks(), [alice.id]); // bigints, as every id
  assert.deepEqual(await alice.client.blocks(), []);
  await assert.rejects(alice.client.send(bob.id, "hello?"), { code: ErrorCode.BLOCKED, name: "BLOCKED" });
  await assert.rejects(alice.client.friendRequest(bob.id), { code: ErrorCode.BLOCKED });
  await bob.client.unblock(alice.id);
  assert.deepEqual(await bob.client.blocks(), []);
  const ack = await alice.client.send(bob.id, "hello again");
  assert.equal(ack.seq, 1);
});

test("a group's life: roles, invite, approval joins, mute, kick, transfer, dissolve", async () => {
  const owner = await user();
  const admin = await user();
  const member = await user();
  const joiner = await user();
  const outsider = await user();

  const group = await owner.client.groupCreate("club", [admin.id, member.id], { notice: "rules" });
  const gid = group.group;
  assert.equal(group.joinMode, "approval");
  assert.equal(group.notice, "rules");

  const rolePush = nextEvent(member.client, "group", (e) => e.event === "role");
  await owner.client.groupSetRole(gid, admin.id, "admin");
  const role = await rolePush;
  assert.deepEqual([role.actor, role.users, role.role], [owner.id, [admin.id], "admin"]);
  await assert.rejects(member.client.groupSetRole(gid, admin.id, "member"), { code: ErrorCode.FORBIDDEN });

  const updated = await admin.client.groupUpdate(gid, { name: "club 2", avatar: "a.png" });
  assert.equal(updated.name, "club 2");
  assert.equal((await outsider.client.groupInfo(gid)).role, "");
  assert.deepEqual((await member.client.groups()).map((g) => g.group), [gid]);

  // approval: a join request reaches the admins, an admin approves
  const requested = nextEvent(admin.client, "group", (e) => e.event === "join_request");
  assert.deepEqual(await joiner.client.groupJoin(gid, "let me in"), { group: gid, status: "pending" });
  assert.deepEqual((await requested).users, [joiner.id]);
  const requests = await admin.client.groupJoinRequests(gid);
  assert.deepEqual(requests.requests.map((r) => [r.user, r.message]), [[joiner.id, "let me in"]]);
  const joined = nextEvent(joiner.client, "group", (e) => e.event === "joined");
  await admin.client.groupApprove(gid, joiner.id, true);
  assert.deepEqual((await joined).users, [joiner.id]);
  await assert.rejects(member.client.groupInvite(gid, [outsider.id]), { code: ErrorCode.FORBIDDEN });

  const members = await owner.client.groupMembers(gid);
  const roles = Object.fromEntries(members.map((m) => [String(m.user), m.role]));
  assert.deepEqual(roles, {
    [owner.id]: "owner", [admin.id]: "admin", [member.id]: "member", [joiner.id]: "member",
  });

  // mutes: one member, then everyone but the owner and admins
  await admin.client.groupMute(gid, member.id, Date.now() + 3_600_000);
  await assert.rejects(member.client.sendGroup(gid, "can I talk?"), { code: ErrorCode.MUTED });
  await admin.client.groupMute(gid, member.id, 0);
  await member.client.sendGroup(gid, "I can talk");
  await owner.client.groupMuteAll(gid, true);
  assert.equal((await owner.client.groupInfo(gid)).muteAll, true);
  await assert.rejects(joiner.client.sendGroup(gid, "hm"), { code: ErrorCode.MUTED });
  await admin.client.sendGroup(gid, "admins still talk");
  await owner.client.groupMuteAll(gid, false);

  // kick and quit
  const kicked = nextEvent(joiner.client, "group", (e) => e.event === "kicked");
  await admin.client.groupKick(gid, joiner.id);
  assert.deepEqual((await kicked).users, [joiner.id]);
  await assert.rejects(joiner.client.sync(`g${gid}`), { code: ErrorCode.FORBIDDEN });
  await member.client.groupQuit(gid);
  await assert.rejects(owner.client.groupQuit(gid), { code: ErrorCode.FORBIDDEN });

  // an open group: join at once; invite by anyone
  await owner.client.groupUpdate(gid, { joinMode: "open" });
  assert.deepEqual(await outsider.client.groupJoin(gid), { group: gid, status: "joined" });
  const invited = await outsider.client.groupInvite(gid, [member.id]);
  assert.deepEqual(invited, { group: gid, users: [member.id], invited: [] }); // added, nobody invited

  // transfer, then the new owner dissolves
  const ownerPush = nextEvent(admin.client, "group", (e) => e.event === "owner");
  await owner.client.groupTransfer(gid, admin.id);
  assert.deepEqual((await ownerPush).users, [admin.id]);
  assert.equal((await admin.client.groupInfo(gid)).owner, admin.id);
  await assert.rejects(owner.client.groupDissolve(gid), { code: ErrorCode.FORBIDDEN });
  const dissolved = nextEvent(owner.client, "group", (e) => e.event === "dissolved");
  await admin.client.groupDissolve(gid);
  assert.equal((await dissolved).group, gid);
  await assert.rejects(admin.client.groupInfo(gid), { code: ErrorCode.NOT_FOUND });
});
