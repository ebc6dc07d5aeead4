// Reactions and forwards against a real `im serve`: react/unreact and the "reaction" event,
// reactions in pages, what a device that was away learns with changes(), forward() with
// its mark, and their errors.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode } from "../dist/index.js";
import { nextEvent, nodeForThisFile } from "./helpers.mjs";

const node = nodeForThisFile({ IM_REACTION_MAX_PER_USER: "2" });
const user = node.user;
const THUMBS = "\u{1F44D}";
const HEART = "\u2764\uFE0F";

test("react: the reply, the peer's reaction event, reactions in history and sync", async () => {
  const alice = await user();
  const bob = await user();
  const ack = await alice.client.send(bob.id, "lunch?");
  const pushed = nextEvent(alice.client, "reaction");
  const event = await bob.client.react(ack.conv, ack.seq, THUMBS);
  assert.equal(event.added, true);
  assert.equal(event.user, bob.id);
  assert.equal(event.msgId, ack.msgId);
  assert.deepEqual(event.reactions, [{ emoji: THUMBS, count: 1, users: [bob.id] }]);
  assert.deepEqual(await pushed, event);

  const history = await alice.client.history(ack.conv);
  assert.deepEqual(history.reactions, [{ seq: ack.seq, rev: event.rev, reactions: event.reactions }]);
  assert.deepEqual(history.changed, []);
  const taken = await bob.client.unreact(ack.conv, ack.seq, THUMBS);
  assert.equal(taken.added, false);
  assert.deepEqual(taken.reactions, []);
  const page = await alice.client.sync(ack.conv); // none left: no entry, and the message's rev says it changed
  assert.deepEqual([page.reactions, page.msgs[0].rev], [[], taken.rev]);
});

test("react: bounds and refusals", async () => {
  const alice = await user();
  const bob = await user();
  const ack = await alice.client.send(bob.id, "x");
  await alice.client.react(ack.conv, ack.seq, THUMBS);
  await alice.client.react(ack.conv, ack.seq, HEART);
  await assert.rejects(alice.client.react(ack.conv, ack.seq, "\u{1F525}"), { code: ErrorCode.REACTION_LIMIT });
  await assert.rejects(bob.client.react(ack.conv, ack.seq, "ok"), { code: ErrorCode.BAD_BODY });
  await alice.client.recall(ack.conv, ack.seq);
  await assert.rejects(bob.client.react(ack.conv, ack.seq, THUMBS), { code: ErrorCode.MESSAGE_RECALLED });
});

test("changes(): what a device that was away learns", async () => {
  const alice = await user();
  const bob = await user();
  const first = await alice.client.send(bob.id, "one");
  const second = await alice.client.send(bob.id, "two");
  const seen = await bob.client.react(first.conv, first.seq, THUMBS);
  const later = await bob.client.react(second.conv, second.seq, HEART);
  const found = await alice.client.changes(first.conv, second.seq, seen.rev);
  assert.deepEqual(found.changed.map((m) => m.seq), [second.seq]);
  assert.deepEqual(found.reactions, [{ seq: second.seq, rev: later.rev, reactions: later.reactions }]);
  assert.equal(found.rev, later.rev);
  assert.deepEqual((await alice.client.changes(first.conv, second.seq, found.rev)).changed, []);
});

test("one change revision: an edit, a reaction and a recall come back through syncChanges once each", async () => {
  const alice = await user();
  const bob = await user();
  const [one, two, three] = [await alice.client.send(bob.id, "a"), await alice.client.send(bob.id, "b"),
    await alice.client.send(bob.id, "c")];
  const conv = one.conv;
  assert.deepEqual((await bob.client.syncChanges(conv)).changed, []);
  const reacted = await alice.client.react(conv, one.seq, THUMBS);
  const edited = await alice.client.edit(conv, two.seq, "b!");
  const recalled = await alice.client.recall(conv, three.seq);
  const again = await alice.client.edit(conv, two.seq, "b!!"); // edited twice: comes once, as it is now
  assert.deepEqual([reacted.rev, edited.rev, recalled.rev, again.rev], [1, 2, 3, 4]);
  const found = await bob.client.syncChanges(conv, 1); // a page of one: pages on by changesMore
  assert.deepEqual(found.changed.map((m) => [m.seq, m.content, m.rev]), [[one.seq, "a", 1], [three.seq, "", 3],
    [two.seq, "b!!", 4]]);
  assert.deepEqual(found.reactions.map((r) => [r.seq, r.reactions.length]),
    [[one.seq, 1], [three.seq, 0], [two.seq, 0]]);
  assert.equal(bob.client.revs.get(conv), 4);
  assert.deepEqual((await bob.client.syncChanges(conv)).changed, []);
});

test("forward: copies marked with their original sender, acked in order", async () => {
  const alice = await user();
  const bob = await user();
  const carol = await user();
  const first = await alice.client.send(bob.id, "the plan");
  const second = await alice.client.send(bob.id, "the place");
  const got = nextEvent(carol.client, "message", (m) => m.seq === 2);
  const acks = await bob.client.forward(carol.id, first.conv, [first.seq, second.seq], { cmid: "fw" });
  assert.deepEqual(acks.map((a) => [a.seq, a.cmid]), [[1, "fw/0"], [2, "fw/1"]]);
  const copy = await got;
  assert.equal(copy.forwardedFrom, alice.id);
  assert.equal(copy.from, bob.id);
  assert.equal(copy.content, "the place");
  const page = await carol.client.history(acks[0].conv);
  assert.deepEqual(page.msgs.map((m) => m.forwardedFrom), [alice.id, alice.id]);
  await bob.client.forward(carol.id, first.conv, [first.seq], { hideSender: true });
  assert.equal((await carol.client.history(acks[0].conv)).msgs[2].forwardedFrom, -1n);
  await assert.rejects(carol.client.forward(bob.id, first.conv, [1]), { code: ErrorCode.FORBIDDEN });
  assert.equal((await alice.client.history(first.conv)).msgs[0].forwardedFrom, 0n);
});

test("forward to a group", async () => {
  const owner = await user();
  const member = await user();
  const friend = await user();
  const group = await owner.client.groupCreate("fw", [member.id]);
  const dm = await friend.client.send(owner.id, "for the group");
  const got = nextEvent(member.client, "message", (m) => m.conv === `g${group.group}`);
  await owner.client.forward(group.group, dm.conv, [dm.seq], { group: true });
  const copy = await got;
  assert.equal(copy.forwardedFrom, friend.id);
  assert.equal(copy.content, "for the group");
});
