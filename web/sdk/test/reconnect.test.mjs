// Reliability against a real `im serve`: a node crash and restart while sends are unacked,
// a connection dropped under the client, a push lost on the way (gap sync), a late joiner.
// Outcomes only: every send stored exactly once, each (conv, seq) delivered once, in order.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, decodeBody, decodeFrame, fromWire, Op } from "../dist/index.js";
import { collect, flakyNetwork, newUser, nextEvent, nodeForThisFile, PASSWORD, range, seqsByConv, storedFor } from "./helpers.mjs";

const node = nodeForThisFile();
const { clients } = node;
const user = node.user;
const fast = { reconnectDelayMs: 50, maxReconnectDelayMs: 500 };

test("node killed and restarted while sends are unacked: each stored once, delivered once in order", async () => {
  // alice knows two URLs: the node and one that never answers (a dead node): reconnects go round both
  const alice = await user({ ...fast, urls: [node.server.url, "ws://127.0.0.1:1/ws"] });
  const bobNet = flakyNetwork();
  const bob = await user({ ...fast, WebSocket: bobNet.WebSocket });
  const carol = await user(fast);
  const group = await alice.client.groupCreate("crash test", [bob.id, carol.id]);
  await bob.client.conversations();
  const bobGot = collect(bob.client, "message");
  const reconnected = nextEvent(bob.client, "reconnected");

  const warmup = await alice.client.send(bob.id, "before the crash");
  const sends = [];
  for (let i = 0; i < 40; i++) {
    sends.push(i % 2 ? alice.client.sendGroup(group.group, `group ${i}`) : alice.client.send(bob.id, `direct ${i}`));
  }
  // the sends are on the wire and none can have been acked yet (no await since)
  assert.equal(alice.client.pendingSends, 40);
  bobNet.down = true; // bob stays away until the test lets him back
  await node.server.stop("SIGKILL");
  await node.server.start();

  const acks = await Promise.all(sends);
  assert.ok(alice.client.reconnects >= 1);
  assert.equal(alice.client.pendingSends, 0);
  // carol sends while bob is still away: only a catch-up can bring him these
  for (let i = 0; i < 5; i++) await carol.client.send(bob.id, `from carol ${i}`);
  await carol.client.sendGroup(group.group, "carol in the group");

  bobNet.down = false;
  const info = await reconnected;
  assert.ok(info.caughtUp >= 6, `caught up ${info.caughtUp}`);
  const direct = acks.filter((a) => a.conv === warmup.conv);
  const inGroup = acks.filter((a) => a.conv === `g${group.group}`);
  assert.deepEqual(direct.map((a) => a.seq).sort((x, y) => x - y), range(2, 21));
  assert.deepEqual(inGroup.map((a) => a.seq).sort((x, y) => x - y), range(1, 20));

  // stored exactly once each (the resends carried their original cmid)
  const stored = await storedFor(node.server, alice.username);
  const cmids = stored.filter((m) => m.from === alice.id).map((m) => m.cmid);
  assert.equal(new Set(cmids).size, cmids.length);
  assert.equal(cmids.length, 41);
  for (const ack of acks) assert.ok(cmids.includes(ack.cmid));

  // bob: every message since his listing, once, in seq order per conversation
  const carolConv = `p${[bob.id, carol.id].sort((a, b) => (a < b ? -1 : 1)).join("_")}`;
  await bobGot.until(21 + 21 + 5);
  assert.deepEqual(seqsByConv(bobGot), {
    [warmup.conv]: range(1, 21),
    [`g${group.group}`]: range(1, 21),
    [carolConv]: range(1, 5),
  });
  // the acks' ids are the stored messages' ids
  const byCmid = new Map(bobGot.map((m) => [m.cmid, m]));
  for (const ack of acks) assert.equal(byCmid.get(ack.cmid).id, ack.msgId);
});

test("a connection dropped under the client after its sends left: acks lost, resent, stored once", async () => {
  const net = flakyNetwork();
  const alice = await user({ ...fast, WebSocket: net.WebSocket });
  const bob = await user(fast);
  await bob.client.conversations();
  const bobGot = collect(bob.client, "message");
  const disconnected = nextEvent(alice.client, "disconnected");
  const sends = range(1, 25).map((i) => alice.client.send(bob.id, `m${i}`));
  assert.equal(alice.client.pendingSends, 25);
  net.dropAll(); // the node may store some before it sees the close; their acks never arrive
  const info = await disconnected;
  assert.equal(info.willReconnect, true);
  const acks = await Promise.all(sends);
  assert.deepEqual(acks.map((a) => a.seq), range(1, 25)); // pipelined sends keep their order
  await bobGot.until(25);
  assert.deepEqual(bobGot.map((m) => m.content), range(1, 25).map((i) => `m${i}`));
  const stored = await storedFor(node.server, bob.username);
  assert.equal(stored.length, 25);
  // after the reconnect the client works as before
  const more = await alice.client.send(bob.id, "after");
  assert.equal(more.seq, 26);
});

test("what a \"reconnected\" listener asks goes through: the reconnect is over when it is told", async () => {
  const net = flakyNetwork();
  const alice = await user({ ...fast, WebSocket: net.WebSocket });
  const bob = await user(fast);
  await alice.client.send(bob.id, "before the drop");
  const asked = new Promise((resolve) => {
    alice.client.on("reconnected", () => {
      // no wait of its own: at once, as an app reloads its lists
      alice.client.conversations().then(resolve, resolve);
    });
  });
  net.dropAll();
  const listed = await asked;
  assert.ok(Array.isArray(listed), `refused: ${listed}`);
  assert.deepEqual(listed.map((c) => c.lastText), ["before the drop"]);
});

test("a push lost on the way: the gap is synced, delivery stays in order and complete", async () => {
  const net = flakyNetwork();
  const alice = await user();
  const bob = await user({ WebSocket: net.WebSocket, gapSyncDelayMs: 100 });
  const lost = new Set([3, 4]);
  net.dropPush = (data) => {
    const frame = decodeFrame(new Uint8Array(data));
    if (frame.op !== Op.MSG_PUSH) return false;
    const { seq } = fromWire(decodeBody(frame.body));
    return lost.has(seq);
  };
  const bobGot = collect(bob.client, "message");
  for (let i = 1; i <= 6; i++) await alice.client.send(bob.id, `n${i}`);
  await bobGot.until(6);
  assert.deepEqual(bobGot.map((m) => m.seq), range(1, 6));
  assert.deepEqual(bobGot.map((m) => m.content), range(1, 6).map((i) => `n${i}`));
  assert.equal(bob.client.lastSeqs.get(bobGot[0].conv), 6);
});

test("a late group joiner gets the messages from their join on, without waiting on older seqs", async () => {
  const owner = await user();
  const late = await user();
  const group = await owner.client.groupCreate("open house", [], { joinMode: "open" });
  for (let i = 1; i <= 3; i++) await owner.client.sendGroup(group.group, `before ${i}`);
  await late.client.groupJoin(group.group);
  const lateGot = collect(late.client, "message");
  await owner.client.sendGroup(group.group, "welcome");
  await owner.client.sendGroup(group.group, "again");
  await lateGot.until(2);
  assert.deepEqual(lateGot.map((m) => [m.seq, m.content]), [[4, "welcome"], [5, "again"]]);
});

test("a revoked token ends reconnecting: error event, unacked sends reject, no reconnect", async () => {
  const net = flakyNetwork();
  const alice = await user({ ...fast, WebSocket: net.WebSocket });
  const bob = await user();
  // another session logged in with alice's token logs out: that revokes the token
  const other = new Client({ urls: node.server.url, terminal: "other", autoReconnect: false });
  clients.push(other);
  await other.connect();
  await other.tokenLogin(alice.client.token);
  await other.logout();

  const error = nextEvent(alice.client, "error");
  net.down = true; // the send below waits in the client, unacked, for the reconnect
  net.dropAll();
  await nextEvent(alice.client, "disconnected");
  const pending = assert.rejects(alice.client.send(bob.id, "never acked"), { code: 2003, name: "TOKEN_INVALID" });
  net.down = false;
  assert.equal((await error).code, 2003);
  await pending;
  assert.equal(alice.client.connected, false);
  assert.equal(alice.client.pendingSends, 0);
});
