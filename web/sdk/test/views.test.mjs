// Per-user views (deleteForMe, clearHistory) and message pins (pinMessage, unpinMessage,
// pins) against a real `im serve`: the typed replies, the "view" and "pin" events, stubs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, ErrorCode } from "../dist/index.js";
import { nextEvent, nodeForThisFile, PASSWORD } from "./helpers.mjs";

const node = nodeForThisFile();
const user = node.user;

async function secondDevice(made, terminal) {
  const device = new Client({ urls: node.server.url, terminal });
  node.clients.push(device);
  await device.connect();
  await device.login(made.username, PASSWORD);
  return device;
}

test("deleteForMe: stubs for me, a view event on my other device, the peer keeps his", async () => {
  const alice = await user();
  const bob = await user();
  const { conv } = await bob.client.send(alice.id, "one");
  await bob.client.send(alice.id, "two");
  const phone = await secondDevice(alice, "phone");
  const told = nextEvent(phone, "view");

  const done = await alice.client.deleteForMe(conv, [2]);

  assert.deepEqual(done, { conv, event: "deleted", seqs: [2], clearedSeq: 0, viewVer: 1 });
  assert.deepEqual((await told).seqs, [2]);
  const mine = (await alice.client.history(conv)).msgs.map((m) => [m.seq, m.content, m.hidden]);
  assert.deepEqual(mine, [[1, "one", false], [2, "", true]]);
  const his = (await bob.client.history(conv)).msgs.map((m) => [m.seq, m.hidden]);
  assert.deepEqual(his, [[1, false], [2, false]]);
  const [entry] = await alice.client.conversations();
  assert.deepEqual([entry.lastText, entry.viewVer, entry.clearedSeq, entry.unread], ["one", 1, 0, 1]);
});

test("clearHistory: nothing to read up to it, unread 0, the other device told", async () => {
  const alice = await user();
  const bob = await user();
  const { conv } = await bob.client.send(alice.id, "old");
  const phone = await secondDevice(alice, "phone");
  const told = nextEvent(phone, "view", (e) => e.event === "cleared");

  const done = await alice.client.clearHistory(conv);

  assert.deepEqual([done.event, done.clearedSeq], ["cleared", 1]);
  assert.equal((await told).clearedSeq, 1);
  assert.deepEqual((await alice.client.sync(conv)).msgs, []);
  const [entry] = await alice.client.conversations();
  assert.deepEqual([entry.unread, entry.clearedSeq, entry.lastText], [0, 1, ""]);
  assert.equal((await bob.client.sync(conv)).msgs.length, 1);
});

test("message pins: pin, the pin event with a bigint by, list, unpin, refusals", async () => {
  const alice = await user();
  const bob = await user();
  const carol = await user();
  const group = await alice.client.groupCreate("pins", [bob.id, carol.id]);
  const conv = `g${group.group}`;
  const { seq } = await bob.client.sendGroup(group.group, "pin me");
  const pinned = nextEvent(carol.client, "pin");

  const pin = await alice.client.pinMessage(conv, seq);

  assert.deepEqual([pin.seq, pin.by, pin.message.content, pin.message.hidden], [seq, alice.id, "pin me", false]);
  const event = await pinned;
  assert.deepEqual([event.event, event.conv, event.seq, event.by], ["pinned", conv, seq, alice.id]);
  const list = await carol.client.pins(conv);
  assert.deepEqual([list.max, list.pins.map((p) => p.seq)], [20, [seq]]);
  await assert.rejects(bob.client.pinMessage(conv, seq), { code: ErrorCode.FORBIDDEN });
  const unpinned = nextEvent(carol.client, "pin", (e) => e.event === "unpinned");
  await alice.client.unpinMessage(conv, seq);
  assert.equal((await unpinned).seq, seq);
  assert.deepEqual((await bob.client.pins(conv)).pins, []);
  await assert.rejects(alice.client.unpinMessage(conv, seq), { code: ErrorCode.NOT_FOUND });
  await alice.client.recall(conv, seq);
  await assert.rejects(alice.client.pinMessage(conv, seq), { code: ErrorCode.MESSAGE_RECALLED });
});
