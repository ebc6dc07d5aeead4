// Replies and edits against a real `im serve`: a reply's quote on the peer's "message" event
// and in pages, an edit's "edit" event on every other device, syncChanges for a device that
// was away, the edits caught up after a reconnect ("changes" events), and the refusals' codes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ErrorCode } from "../dist/index.js";
import { collect, flakyNetwork, nextEvent, nodeForThisFile, PASSWORD } from "./helpers.mjs";
import { Client } from "../dist/index.js";

const node = nodeForThisFile();
const user = node.user;
const fast = { reconnectDelayMs: 50, maxReconnectDelayMs: 500 };

test("a reply carries what it quotes, on the push and in pages", async () => {
  const alice = await user();
  const bob = await user();
  await alice.client.conversations();
  const aliceGot = collect(alice.client, "message");
  const original = await alice.client.send(bob.id, "lunch at noon?");
  const reply = await bob.client.send(alice.id, "yes", { replyTo: original.msgId });
  await aliceGot.until(1);
  const expected = { id: original.msgId, seq: original.seq, from: alice.id, type: 1, snippet: "lunch at noon?",
    recalled: false };
  assert.deepEqual(aliceGot[0].reply, expected);
  const page = await bob.client.history(reply.conv);
  assert.deepEqual(page.msgs.map((m) => m.reply), [null, expected]);
  await assert.rejects(bob.client.send(alice.id, "re", { replyTo: 2n ** 62n }), { code: ErrorCode.REPLY_NOT_FOUND });
});

test("an edit: the edited message returned, an edit event on the other devices, pages show it", async () => {
  const alice = await user();
  const bob = await user();
  const phone = new Client({ urls: node.server.url, terminal: "phone" });
  node.clients.push(phone);
  await phone.connect();
  await phone.login(bob.username, PASSWORD);
  const ack = await alice.client.send(bob.id, "helo");
  const onBob = nextEvent(bob.client, "edit", (m) => m.conv === ack.conv);
  const onPhone = nextEvent(phone, "edit", (m) => m.conv === ack.conv);
  const edited = await alice.client.edit(ack.conv, ack.seq, "hello");
  assert.equal(edited.content, "hello");
  assert.ok(edited.editedAt >= edited.ts);
  assert.equal(edited.rev, 1);
  for (const got of [await onBob, await onPhone]) {
    assert.deepEqual([got.seq, got.content, got.editedAt, got.rev], [ack.seq, "hello", edited.editedAt, 1]);
  }
  const page = await bob.client.sync(ack.conv);
  assert.deepEqual([page.msgs[0].content, page.msgs[0].editedAt], ["hello", edited.editedAt]);
  await assert.rejects(bob.client.edit(ack.conv, ack.seq, "mine"), { code: ErrorCode.FORBIDDEN });
  await assert.rejects(alice.client.edit(ack.conv, 99, "none"), { code: ErrorCode.NOT_FOUND });
  await alice.client.recall(ack.conv, ack.seq);
  await assert.rejects(alice.client.edit(ack.conv, ack.seq, "back"), { code: ErrorCode.NOT_EDITABLE });
});

test("syncChanges: what was edited since the client's change revision, each once", async () => {
  const alice = await user();
  const bob = await user();
  const one = await alice.client.send(bob.id, "one");
  const two = await alice.client.send(bob.id, "two");
  await alice.client.edit(one.conv, one.seq, "one!");
  await alice.client.edit(two.conv, two.seq, "two!");
  await alice.client.edit(one.conv, one.seq, "one!!");
  const edits = (await bob.client.syncChanges(one.conv, 1)).changed; // a page of one: pages on by changesMore
  assert.deepEqual(edits.map((m) => [m.seq, m.content, m.rev]), [[two.seq, "two!", 2], [one.seq, "one!!", 3]]);
  assert.equal(bob.client.revs.get(one.conv), 3);
  assert.deepEqual((await bob.client.syncChanges(one.conv)).changed, []);
});

test("after a reconnect, the edits made meanwhile come as a changes event", async () => {
  const net = flakyNetwork();
  const alice = await user();
  const bob = await user({ ...fast, WebSocket: net.WebSocket });
  const ack = await alice.client.send(bob.id, "draft");
  await bob.client.sync(ack.conv); // bob holds the message
  await bob.client.syncChanges(ack.conv); // current: revision 0
  const disconnected = nextEvent(bob.client, "disconnected");
  net.down = true;
  net.dropAll();
  await disconnected;
  await alice.client.edit(ack.conv, ack.seq, "final");
  const caught = nextEvent(bob.client, "changes", (c) => c.conv === ack.conv);
  net.down = false;
  const got = await caught;
  assert.deepEqual(got.changed.map((m) => [m.seq, m.content, m.rev]), [[ack.seq, "final", 1]]);
  assert.equal(got.rev, 1);
  assert.equal(bob.client.revs.get(ack.conv), 1);
});
