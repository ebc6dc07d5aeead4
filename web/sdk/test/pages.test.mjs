// Lists larger than a frame against a real `im serve`: the SDK follows the pages (a page
// may hold fewer than its limit), catch-up of a user whose conversation list takes many
// pages, and the paged GROUP_JOIN_REQUESTS.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Client } from "../dist/index.js";
import { PASSWORD, collect, nodeForThisFile } from "./helpers.mjs";

// the set-up creates many groups quickly: its budgets out of the way
const node = nodeForThisFile({ IM_RATE: "1000000", IM_BURST: "1000000", IM_GROUP_CREATES_PER_HOUR: "1000000" });
const { clients } = node;
const user = node.user;
const WIDE = "😀"; // 4 bytes in UTF-8

test("catch-up follows the pages of a list that takes many frames", async () => {
  const me = await user();
  const other = await user();
  const made = [];
  for (let start = 0; start < 1200; start += 200) {
    const batch = [];
    for (let n = start; n < start + 200; n++) batch.push(me.client.groupCreate(String(n).padStart(4, "0") + WIDE.repeat(60)));
    made.push(...(await Promise.all(batch)));
  }
  const shared = await me.client.groupCreate("shared", [other.id]);
  for (let i = 1; i <= 3; i++) await other.client.sendGroup(shared.group, `m${i}`);

  const device = new Client({ urls: node.server.url, terminal: "ios" });
  clients.push(device);
  await device.connect();
  await device.login(me.username, PASSWORD);
  const got = collect(device, "message");
  const found = await device.catchUp();
  const listed = await device.conversations();

  assert.equal(made.length, 1200);
  assert.equal(listed.length, 1201);
  assert.equal(new Set(listed.map((c) => c.conv)).size, 1201);
  assert.equal(listed[0].conv, `g${shared.group}`);
  assert.equal(found, 3);
  await got.until(3);
  assert.deepEqual(got.map((m) => m.content), ["m1", "m2", "m3"]);
  const page = await device.conversationsPage("", 500);
  assert.ok(page.hasMore && page.convs.length < 500); // fewer than the limit: the frame is full
});

test("requests to join come in pages; groupJoinRequests follows them", async () => {
  const owner = await user();
  const group = await owner.client.groupCreate("club", [], { joinMode: "approval" });
  const askers = [await user(), await user(), await user()];
  for (const a of askers) await a.client.groupJoin(group.group, "me");
  const ids = askers.map((a) => a.id).sort((x, y) => (x < y ? -1 : 1));

  const first = await owner.client.groupJoinRequestsPage(group.group, 0n, 2);
  const second = await owner.client.groupJoinRequestsPage(group.group, first.requests[1].user, 2);
  const all = await owner.client.groupJoinRequests(group.group);

  assert.deepEqual([first.requests.map((r) => r.user), first.hasMore], [ids.slice(0, 2), true]);
  assert.deepEqual([second.requests.map((r) => r.user), second.hasMore], [ids.slice(2), false]);
  assert.deepEqual(all.requests.map((r) => r.user), ids);
  assert.equal(all.hasMore, false);
});
