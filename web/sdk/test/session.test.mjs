// Session and messaging against a real `im serve`: register, login, token login, errors,
// 1:1 and group sends with push events, sync and history, conversations and read receipts,
// recall, search.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, DisconnectedError, ErrorCode, ServerError } from "../dist/index.js";
import { collect, newUser, nextEvent, nodeForThisFile, PASSWORD, uniqueName } from "./helpers.mjs";

const node = nodeForThisFile();
const { clients } = node;
const user = node.user;

test("register, login and token login give the same bigint user id", async () => {
  const client = new Client({ urls: node.server.url, terminal: "desktop" });
  clients.push(client);
  await client.connect();
  assert.equal(client.connected, true);
  const name = uniqueName();
  const id = await client.register(name, PASSWORD, "Nick");
  assert.equal(typeof id, "bigint");
  const ok = await client.login(name, PASSWORD);
  assert.equal(ok.userId, id);
  assert.equal(client.userId, id);
  assert.equal(ok.terminal, "desktop");
  assert.equal(typeof ok.token, "string");
  assert.ok(ok.expiresAt > Date.now() / 1000);

  const again = new Client({ urls: node.server.url, terminal: "phone" });
  clients.push(again);
  await again.connect();
  const viaToken = await again.tokenLogin(ok.token);
  assert.equal(viaToken.userId, id);
  assert.equal(again.token, viaToken.token);
  await again.ping();
});

test("server errors reject with ServerError carrying code and name", async () => {
  const client = new Client({ urls: node.server.url });
  clients.push(client);
  await client.connect();
  await assert.rejects(client.login(uniqueName(), "wrong-password"), (exc) => {
    assert.ok(exc instanceof ServerError);
    assert.equal(exc.code, ErrorCode.BAD_CREDENTIALS);
    assert.equal(exc.name, "BAD_CREDENTIALS");
    assert.equal(typeof exc.message, "string");
    return true;
  });
  await assert.rejects(client.conversations(), { code: ErrorCode.NOT_AUTHENTICATED, name: "NOT_AUTHENTICATED" });
  await assert.rejects(client.tokenLogin("not-a-token"), { code: ErrorCode.TOKEN_INVALID });
  const name = uniqueName();
  await client.register(name, PASSWORD);
  await assert.rejects(client.register(name, PASSWORD), { code: ErrorCode.USERNAME_TAKEN });
  // a schema violation from the client side is the server's BAD_BODY, not a crash
  await assert.rejects(client.register("x", PASSWORD), { code: ErrorCode.BAD_BODY });
  await client.login(name, PASSWORD);
  await assert.rejects(client.send(client.userId, "to myself"), { code: ErrorCode.INVALID_ARGUMENT });
  await assert.rejects(client.send(2n ** 63n - 1n, "nobody"), { code: ErrorCode.USER_NOT_FOUND });
  await assert.rejects(client.sync("p1-2"), { code: ErrorCode.INVALID_ARGUMENT });
  // the connection survives every error
  await client.ping();
});

test("a client with no node to reach rejects connect with DisconnectedError", async () => {
  const client = new Client({ urls: ["ws://127.0.0.1:1/ws"], autoReconnect: false });
  await assert.rejects(client.connect(), DisconnectedError);
  assert.equal(client.connected, false);
  await assert.rejects(client.ping(), DisconnectedError);
});

test("1:1 send: ack with ids, push to the peer and to the sender's other devices", async () => {
  const alice = await user();
  const bob = await user();
  const aliceTablet = new Client({ urls: node.server.url, terminal: "tablet" });
  clients.push(aliceTablet);
  await aliceTablet.connect();
  await aliceTablet.login(alice.username, PASSWORD);
  const bobGot = collect(bob.client, "message");
  const tabletGot = collect(aliceTablet, "message");
  const aliceGot = collect(alice.client, "message");

  const ack = await alice.client.send(bob.id, "hi bob");
  const [lo, hi] = alice.id < bob.id ? [alice.id, bob.id] : [bob.id, alice.id];
  assert.equal(ack.conv, `p${lo}_${hi}`);
  assert.equal(ack.seq, 1);
  assert.equal(typeof ack.msgId, "bigint");
  await bobGot.until(1);
  await tabletGot.until(1);
  assert.deepEqual(bobGot[0], {
    id: ack.msgId, conv: ack.conv, seq: 1, from: alice.id, to: bob.id, cmid: ack.cmid, type: 1, content: "hi bob",
    ts: ack.ts, mentions: [], mentionAll: false, recalledBy: 0n, recalledAt: 0, tooLarge: false,
    reply: null, editedAt: 0, rev: 0, forwardedFrom: 0n, hidden: false,
  });
  assert.equal(tabletGot[0].from, alice.id);
  // bob answers; alice's own sends were never "message" events on the sending client
  await bob.client.send(alice.id, { lat: 1.5, lng: 2.5, name: "here" }, { type: 6 });
  await aliceGot.until(1);
  assert.equal(aliceGot.length, 1);
  assert.equal(aliceGot[0].seq, 2);
  assert.deepEqual(aliceGot[0].content, { lat: 1.5, lng: 2.5, name: "here" });
  assert.equal(aliceGot[0].type, 6);
});

test("a retried cmid is stored once and acked with the original ids", async () => {
  const alice = await user();
  const bob = await user();
  const first = await alice.client.send(bob.id, "once", { cmid: "fixed-cmid-1" });
  const second = await alice.client.send(bob.id, "ignored retry content", { cmid: "fixed-cmid-1" });
  assert.deepEqual(second, first);
  const page = await bob.client.sync(first.conv);
  assert.deepEqual(page.msgs.map((m) => m.content), ["once"]);
});

test("group send with mentions: members get the push with GROUP target ids as bigint", async () => {
  const owner = await user();
  const m1 = await user();
  const m2 = await user();
  const created = nextEvent(m1.client, "group", (e) => e.event === "created");
  const group = await owner.client.groupCreate("team", [m1.id, m2.id], { joinMode: "open" });
  assert.equal(typeof group.group, "bigint");
  assert.equal(group.owner, owner.id);
  assert.equal(group.members, 3);
  assert.equal(group.role, "owner");
  const ev = await created;
  assert.equal(ev.group, group.group);
  assert.deepEqual([...ev.users].sort(), [owner.id, m1.id, m2.id].sort());

  const got1 = collect(m1.client, "message");
  const got2 = collect(m2.client, "message");
  const ack = await owner.client.sendGroup(group.group, "hello team", { mentions: [m1.id] });
  assert.equal(ack.conv, `g${group.group}`);
  await got1.until(1);
  await got2.until(1);
  assert.equal(got1[0].to, group.group);
  assert.deepEqual(got1[0].mentions, [m1.id]);
  assert.equal(got2[0].content, "hello team");
  const ack2 = await owner.client.sendGroup(group.group, "all of you", { mentionAll: true });
  await got2.until(2);
  assert.equal(got2[1].seq, ack2.seq);
  assert.equal(got2[1].mentionAll, true);
  const convs = await m1.client.conversations();
  const entry = convs.find((c) => c.conv === ack.conv);
  assert.equal(entry.kind, "group");
  assert.equal(entry.group, group.group);
  assert.equal(entry.peer, 0n);
  assert.equal(entry.mentioned, true);
  assert.equal(entry.unread, 2);
});

test("sync pages forward, history pages back, both ascending", async () => {
  const alice = await user();
  const bob = await user();
  let conv;
  for (let i = 1; i <= 7; i++) conv = (await alice.client.send(bob.id, `m${i}`)).conv;
  const first = await bob.client.sync(conv, 0, 3);
  assert.deepEqual(first.msgs.map((m) => m.seq), [1, 2, 3]);
  assert.equal(first.hasMore, true);
  const rest = await bob.client.sync(conv, 3, 100);
  assert.deepEqual(rest.msgs.map((m) => m.content), ["m4", "m5", "m6", "m7"]);
  assert.equal(rest.hasMore, false);
  const newest = await bob.client.history(conv, 0, 2);
  assert.deepEqual(newest.msgs.map((m) => m.seq), [6, 7]);
  assert.equal(newest.hasMore, true);
  const older = await bob.client.history(conv, newest.msgs[0].seq, 50);
  assert.deepEqual(older.msgs.map((m) => m.seq), [1, 2, 3, 4, 5]);
  assert.equal(older.hasMore, false);
});

test("conversations, conv settings, read cursor and read receipts", async () => {
  const alice = await user();
  const bob = await user();
  const bobPhone = new Client({ urls: node.server.url, terminal: "phone" });
  clients.push(bobPhone);
  await bobPhone.connect();
  await bobPhone.login(bob.username, PASSWORD);
  const ack = await alice.client.send(bob.id, "read me");
  await alice.client.send(bob.id, "and me");
  const [entry] = (await bob.client.conversations()).filter((c) => c.conv === ack.conv);
  assert.equal(entry.kind, "private");
  assert.equal(entry.peer, alice.id);
  assert.equal(entry.lastSeq, 2);
  assert.equal(entry.unread, 2);
  assert.equal(entry.lastText, "and me");
  assert.equal(entry.lastFrom, alice.id);

  const receipt = nextEvent(alice.client, "read", (r) => r.conv === ack.conv);
  const otherDevice = nextEvent(bobPhone, "read", (r) => r.conv === ack.conv);
  const mark = await bob.client.read(ack.conv, 2);
  assert.deepEqual(mark, { conv: ack.conv, user: bob.id, seq: 2 });
  assert.deepEqual(await receipt, mark);
  assert.deepEqual(await otherDevice, mark);
  const readers = await alice.client.readers(ack.conv, 1);
  assert.equal(readers.count, 1);
  assert.deepEqual(readers.users, [bob.id]);

  const convPush = nextEvent(bobPhone, "conv", (c) => c.conv === ack.conv);
  const state = await bob.client.convSet(ack.conv, { pinned: true, muted: true });
  assert.deepEqual(state, { conv: ack.conv, pinned: true, muted: true, hidden: false });
  assert.deepEqual(await convPush, state);
  const [after] = (await bob.client.conversations()).filter((c) => c.conv === ack.conv);
  assert.equal(after.unread, 0);
  assert.equal(after.pinned, true);
  const page = await bob.client.conversationsPage("", 1);
  assert.equal(page.convs.length, 1);
  assert.equal(typeof page.nextCursor, "string");
});

test("recall: tombstone returned, recall event to the peer, sync shows it", async () => {
  const alice = await user();
  const bob = await user();
  const ack = await alice.client.send(bob.id, "oops");
  const recallEvent = nextEvent(bob.client, "recall", (m) => m.conv === ack.conv);
  const tomb = await alice.client.recall(ack.conv, ack.seq);
  assert.equal(tomb.content, "");
  assert.equal(tomb.recalledBy, alice.id);
  assert.ok(tomb.recalledAt > 0);
  const pushed = await recallEvent;
  assert.equal(pushed.seq, ack.seq);
  assert.equal(pushed.recalledBy, alice.id);
  const page = await bob.client.sync(ack.conv);
  assert.equal(page.msgs[0].recalledBy, alice.id);
  await assert.rejects(alice.client.recall(ack.conv, ack.seq), { code: ErrorCode.CONFLICT });
  await assert.rejects(bob.client.recall(ack.conv, 99), { code: ErrorCode.NOT_FOUND });
});

test("search finds the caller's text messages, newest first", async () => {
  const alice = await user();
  const bob = await user();
  const word = uniqueName("needle");
  await alice.client.send(bob.id, `first ${word}`);
  await alice.client.send(bob.id, "nothing here");
  const last = await alice.client.send(bob.id, `second ${word}`);
  const page = await bob.client.search(word);
  assert.deepEqual(page.msgs.map((m) => m.content), [`second ${word}`, `first ${word}`]);
  assert.equal(page.msgs[0].id, last.msgId);
  const next = await bob.client.search(word, { before: page.msgs[0].id, limit: 5 });
  assert.deepEqual(next.msgs.map((m) => m.content), [`first ${word}`]);
});

test("logout revokes the token and closes without reconnecting", async () => {
  const { client } = await user();
  const token = client.token;
  const gone = nextEvent(client, "disconnected");
  await client.logout();
  const info = await gone;
  assert.equal(info.code, 4009);
  assert.equal(info.willReconnect, false);
  const other = new Client({ urls: node.server.url });
  clients.push(other);
  await other.connect();
  await assert.rejects(other.tokenLogin(token), { code: ErrorCode.TOKEN_INVALID });
});

test("a second login on the same terminal kicks the first: kicked event, no reconnect", async () => {
  const first = await user();
  const kicked = nextEvent(first.client, "kicked");
  const gone = nextEvent(first.client, "disconnected");
  const second = new Client({ urls: node.server.url, terminal: "web" });
  clients.push(second);
  await second.connect();
  await second.login(first.username, PASSWORD);
  assert.deepEqual(await kicked, { reason: "replaced", terminal: "web" });
  const info = await gone;
  assert.equal(info.code, 4001);
  assert.equal(info.willReconnect, false);
  await second.ping();
});
