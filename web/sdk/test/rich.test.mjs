// Typing, presence, settings, call signaling and files (upload and download through the
// node's HTTP port) against a real `im serve`; then USER_FIND and USERS.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, ErrorCode, FileTransferError, ServerError } from "../dist/index.js";
import { collect, newUser, nextEvent, nodeForThisFile, PASSWORD } from "./helpers.mjs";

const node = nodeForThisFile();
const { clients } = node;
const user = node.user;

test("typing: the peer gets typing events on and off, never stored", async () => {
  const alice = await user();
  const bob = await user();
  const { conv } = await alice.client.send(bob.id, "hey");
  const on = nextEvent(bob.client, "typing", (e) => e.typing === true);
  await alice.client.typing(conv);
  assert.deepEqual(
    (({ conv, user, typing }) => ({ conv, user, typing }))(await on),
    { conv, user: alice.id, typing: true },
  );
  const off = nextEvent(bob.client, "typing", (e) => e.typing === false);
  await alice.client.typing(conv, false);
  assert.equal((await off).user, alice.id);
  assert.equal((await bob.client.sync(conv)).msgs.length, 1);
});

test("presence: ask, watch, and presence events as a user comes and goes", async () => {
  const alice = await user();
  const bob = await user();
  const [now] = await alice.client.presence([bob.id]);
  assert.deepEqual(now, { user: bob.id, online: true, terminals: [{ terminal: "web" }] });
  await alice.client.presenceSubscribe([bob.id]);
  const phoneOnline = nextEvent(alice.client, "presence",
    (p) => p.user === bob.id && p.terminals.some((t) => t.terminal === "phone"));
  const phone = new Client({ urls: node.server.url, terminal: "phone" });
  clients.push(phone);
  await phone.connect();
  await phone.login(bob.username, PASSWORD);
  const seen = await phoneOnline;
  assert.equal(seen.online, true);
  assert.deepEqual(seen.terminals.map((t) => t.terminal).sort(), ["phone", "web"]);

  // invisible: offline to others
  const hidden = nextEvent(alice.client, "presence", (p) => p.user === bob.id && !p.online);
  // (groupAdd: this suite's node lets anyone add anyone to a group, server.mjs)
  assert.deepEqual(await bob.client.settings({ invisible: true }), { invisible: true, groupAdd: "anyone" });
  assert.deepEqual(await hidden, { user: bob.id, online: false, terminals: [] });
  assert.deepEqual(await bob.client.settings(), { invisible: true, groupAdd: "anyone" });
  await bob.client.settings({ invisible: false });
  await alice.client.presenceUnsubscribe([bob.id]);
  await assert.rejects(alice.client.presenceSubscribe([alice.id]), { code: ErrorCode.INVALID_ARGUMENT });
});

test("a call: ring, accept with SDP, ICE, hangup; then the call record message", async () => {
  const alice = await user();
  const bob = await user();
  const ring = nextEvent(bob.client, "call", (e) => e.event === "ring");
  const started = await alice.client.callInvite(bob.id, "video", "offer-sdp");
  assert.equal(typeof started.call, "bigint");
  const rang = await ring;
  assert.deepEqual([rang.call, rang.caller, rang.callee, rang.kind, rang.sdp], [started.call, alice.id, bob.id, "video", "offer-sdp"]);

  const accepted = nextEvent(alice.client, "call", (e) => e.event === "accepted");
  await bob.client.callAccept(started.call, "answer-sdp");
  assert.equal((await accepted).sdp, "answer-sdp");
  const ice = nextEvent(bob.client, "call", (e) => e.event === "ice");
  await alice.client.callIce(started.call, "candidate:1");
  assert.equal((await ice).candidate, "candidate:1");

  const record = nextEvent(bob.client, "message", (m) => m.type === 8);
  const hangup = nextEvent(bob.client, "call", (e) => e.event === "hangup");
  await alice.client.callHangup(started.call);
  assert.equal((await hangup).call, started.call);
  const message = await record;
  assert.equal(message.content.status, "answered");
  assert.equal(message.from, alice.id);

  // a second call rejected, a third cancelled
  const second = await alice.client.callInvite(bob.id, "audio", "o2");
  const rejected = nextEvent(alice.client, "call", (e) => e.event === "rejected");
  await bob.client.callReject(second.call);
  assert.equal((await rejected).call, second.call);
  const third = await alice.client.callInvite(bob.id, "audio", "o3");
  const cancelled = nextEvent(bob.client, "call", (e) => e.event === "cancelled");
  await alice.client.callCancel(third.call);
  assert.equal((await cancelled).call, third.call);
  await assert.rejects(bob.client.callAccept(third.call, "late"), { code: ErrorCode.NOT_FOUND });
});

test("files: upload through the grant, share the key, the peer downloads the same bytes", async () => {
  const alice = await user();
  const bob = await user();
  const { conv } = await alice.client.send(bob.id, "a file follows");
  const bytes = new Uint8Array(100_000).map((_, i) => (i * 31) & 0xff);
  const key = await alice.client.upload(conv, bytes, "application/octet-stream", "data file.bin");
  assert.ok(key.startsWith(`${conv}/`));
  assert.ok(key.endsWith("/data_file.bin"));
  await alice.client.send(bob.id, { key, name: "data file.bin", size: bytes.length, mime: "application/octet-stream" }, { type: 3 });
  const got = await bob.client.download(key);
  assert.deepEqual(got, bytes);
  const grant = await bob.client.fileDownloadGrant(key);
  assert.equal(grant.size, bytes.length);
  assert.equal(grant.name, "data_file.bin");
  assert.ok(grant.url.startsWith(node.server.httpUrl));

  // a Blob uploads too
  const blobKey = await alice.client.upload(conv, new Blob(["hello file"]), "text/plain", "hello.txt");
  assert.equal(new TextDecoder().decode(await bob.client.download(blobKey)), "hello file");
});

test("files: refusals are ServerError (grant) and FileTransferError (HTTP)", async () => {
  const alice = await user();
  const bob = await user();
  const outsider = await user();
  const { conv } = await alice.client.send(bob.id, "x");
  await assert.rejects(alice.client.upload(conv, new Uint8Array(4), "application/x-msdownload", "a.exe"), {
    code: ErrorCode.FILE_TYPE_REFUSED,
  });
  const key = await alice.client.upload(conv, new Uint8Array([1, 2, 3]), "image/png", "p.png");
  await assert.rejects(outsider.client.download(key), { code: ErrorCode.FORBIDDEN });
  const never = `${conv}/AAAAAAAAAAAAAAAA/never.bin`;
  await assert.rejects(bob.client.download(never), (exc) => exc instanceof ServerError && exc.code === ErrorCode.NOT_FOUND);
  // a URL altered after signing is refused by the HTTP server
  const grant = await bob.client.fileDownloadGrant(key);
  const altered = grant.url.replace("X-Im-Signature=", "X-Im-Signature=0");
  const response = await fetch(altered);
  assert.equal(response.status, 403);
  const sneaky = new Client({
    urls: node.server.url,
    fetch: (url, init) => fetch(url.replace("X-Im-Signature=", "X-Im-Signature=0"), init),
  });
  clients.push(sneaky);
  await sneaky.connect();
  await sneaky.login(bob.username, PASSWORD, "sneaky");
  await assert.rejects(sneaky.download(key), (exc) => exc instanceof FileTransferError && exc.status === 403);
});

// USER_FIND and USERS are the newest ops: last
test("userFind and users: profiles by username and by ids", async () => {
  const alice = await user();
  const bob = await user();
  const found = await alice.client.userFind(bob.username);
  assert.equal(found.user, bob.id);
  assert.equal(found.username, bob.username);
  assert.equal(typeof found.nickname, "string"); // registered without one: "" or the username
  // docs/protocol.md 9.22: USER_NOT_FOUND when no account has that username
  await assert.rejects(alice.client.userFind("nobody-" + bob.username), { code: ErrorCode.USER_NOT_FOUND });
  const carol = new Client({ urls: node.server.url });
  clients.push(carol);
  await carol.connect();
  const carolId = await carol.register("carol-" + bob.username, PASSWORD, "Carol C.");
  const profiles = await alice.client.users([carolId, bob.id, 2n ** 62n]);
  assert.deepEqual(profiles, [
    { user: carolId, username: "carol-" + bob.username, nickname: "Carol C.", avatar: "", bio: "", deleted: false },
    { user: bob.id, username: bob.username, nickname: found.nickname, avatar: "", bio: "", deleted: false },
  ]);
  assert.deepEqual(await alice.client.users([]), []);
});
