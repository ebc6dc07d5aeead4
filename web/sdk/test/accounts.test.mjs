// Accounts and profiles against a real `im serve`: profileSet and the "profile" event,
// uploadAvatar, passwordChange (other sessions kicked, older tokens refused), accountDelete.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client, ErrorCode } from "../dist/index.js";
import { nextEvent, nodeForThisFile, PASSWORD } from "./helpers.mjs";

const node = nodeForThisFile();
const { clients } = node;
const user = node.user;

async function befriend(a, b) {
  const accepted = nextEvent(a.client, "friend", (e) => e.event === "accepted");
  await a.client.friendRequest(b.id);
  await b.client.friendAccept(a.id);
  await accepted;
}

async function another(terminal) {
  const client = new Client({ urls: node.server.url, terminal, autoReconnect: false });
  clients.push(client);
  await client.connect();
  return client;
}

test("profileSet: the friend gets a profile event, users() shows the new values", async () => {
  const alice = await user();
  const bob = await user();
  await befriend(alice, bob);
  const pushed = nextEvent(bob.client, "profile", (p) => p.user === alice.id);
  const now = await alice.client.profileSet({ nickname: "Alice B.", bio: "hi", avatar: "https://a.example.org/me.png" });
  assert.deepEqual(
    { nickname: now.nickname, bio: now.bio, avatar: now.avatar, deleted: now.deleted },
    { nickname: "Alice B.", bio: "hi", avatar: "https://a.example.org/me.png", deleted: false },
  );
  assert.equal((await pushed).nickname, "Alice B.");
  const [seen] = await bob.client.users([alice.id]);
  assert.equal(seen.bio, "hi");
  await assert.rejects(alice.client.profileSet({ avatar: "http://a.example.org/x.png" }), {
    code: ErrorCode.INVALID_ARGUMENT,
  });
});

test("uploadAvatar: a file of the own avatar space, which others download", async () => {
  const alice = await user();
  const bob = await user();
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
  const profile = await alice.client.uploadAvatar(png, "image/png", "me.png");
  assert.ok(profile.avatar.startsWith(`a${alice.id}/`));
  assert.deepEqual(await bob.client.download(profile.avatar), png);
});

test("passwordChange: other sessions are kicked, older tokens refused, this one stays", async () => {
  const alice = await user();
  const phone = await another("phone");
  const oldToken = (await phone.login(alice.username, PASSWORD)).token;
  const kicked = nextEvent(phone, "kicked");
  await assert.rejects(alice.client.passwordChange("wrong-pw", "new-secret"), { code: ErrorCode.BAD_CREDENTIALS });
  const changed = await alice.client.passwordChange(PASSWORD, "new-secret");
  assert.equal(changed.closed, 1);
  assert.equal(alice.client.token, changed.token);
  assert.deepEqual(await kicked, { reason: "password_changed", terminal: "phone" });
  await alice.client.ping();
  const late = await another("tv");
  await assert.rejects(late.tokenLogin(oldToken), { code: ErrorCode.TOKEN_INVALID });
  await late.tokenLogin(changed.token);
});

test("accountDelete: closed with 4009, logins refused, shown as a deleted user", async () => {
  const gone = await user();
  const bob = await user();
  await befriend(gone, bob);
  await assert.rejects(gone.client.accountDelete("wrong-pw"), { code: ErrorCode.BAD_CREDENTIALS });
  const closed = nextEvent(gone.client, "disconnected");
  const told = nextEvent(bob.client, "profile", (p) => p.user === gone.id && p.deleted);
  await gone.client.accountDelete(PASSWORD);
  const info = await closed;
  assert.equal(info.code, 4009);
  assert.equal(info.willReconnect, false);
  assert.equal((await told).nickname, "Deleted user");
  assert.deepEqual(await bob.client.friends(), []);
  const late = await another("web");
  await assert.rejects(late.login(gone.username, PASSWORD), { code: ErrorCode.ACCOUNT_DELETED });
});
