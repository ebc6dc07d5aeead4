// The delivery rules without a network: each (conv, seq) once, in seq order, gaps held
// until they close, and what a SYNC page does to them.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Inbox } from "../dist/inbox.js";

function inbox() {
  const got = [];
  const opened = [];
  const closed = [];
  const box = new Inbox((m) => got.push(`${m.conv}:${m.seq}`), (c) => opened.push(c), (c) => closed.push(c));
  const msg = (conv, seq) => ({ conv, seq });
  return { box, got, opened, closed, msg };
}

test("out-of-order seqs are held and delivered in order once the gap fills", () => {
  const { box, got, opened, closed, msg } = inbox();
  assert.equal(box.accept("c", 1, msg("c", 1)), true);
  assert.equal(box.accept("c", 3, msg("c", 3)), true);
  assert.equal(box.accept("c", 4, msg("c", 4)), true);
  assert.deepEqual(got, ["c:1"]);
  assert.deepEqual(opened, ["c", "c"]);
  assert.equal(box.hasGap("c"), true);
  assert.deepEqual([...box.gaps()], [["c", 4]]);
  box.accept("c", 2, msg("c", 2));
  assert.deepEqual(got, ["c:1", "c:2", "c:3", "c:4"]);
  assert.deepEqual(closed, ["c"]);
  assert.equal(box.mark("c"), 4);
});

test("duplicates are dropped, below the mark and beyond the gap alike", () => {
  const { box, got, msg } = inbox();
  box.accept("c", 1, msg("c", 1));
  box.accept("c", 3, msg("c", 3));
  assert.equal(box.accept("c", 1, msg("c", 1)), false);
  assert.equal(box.accept("c", 3, msg("c", 3)), false);
  box.accept("c", 2, msg("c", 2));
  assert.deepEqual(got, ["c:1", "c:2", "c:3"]);
});

test("an own send (null) moves the mark without a message event", () => {
  const { box, got, msg } = inbox();
  box.accept("c", 2, msg("c", 2));
  box.accept("c", 3, null);
  box.accept("c", 1, msg("c", 1));
  assert.deepEqual(got, ["c:1", "c:2"]);
  assert.equal(box.mark("c"), 3);
});

test("cover: seqs that are not the user's close the gap; held ones are delivered or dropped", () => {
  const caughtUp = inbox();
  caughtUp.box.accept("g", 5, caughtUp.msg("g", 5));
  caughtUp.box.accept("g", 7, caughtUp.msg("g", 7));
  caughtUp.box.cover("g", 4, true); // 1..4: before the join
  assert.deepEqual(caughtUp.got, ["g:5"]);
  caughtUp.box.cover("g", 6, true);
  assert.deepEqual(caughtUp.got, ["g:5", "g:7"]);
  assert.equal(caughtUp.box.hasGap("g"), false);

  const paged = inbox();
  paged.box.accept("c", 2, paged.msg("c", 2));
  paged.box.accept("c", 5, paged.msg("c", 5));
  paged.box.cover("c", 3, false); // the application read 1..3 from a SYNC page
  assert.deepEqual(paged.got, []);
  assert.equal(paged.box.mark("c"), 3);
  paged.box.accept("c", 4, paged.msg("c", 4));
  assert.deepEqual(paged.got, ["c:4", "c:5"]);
});

test("conversations are independent", () => {
  const { box, got, msg } = inbox();
  box.accept("a", 2, msg("a", 2));
  box.accept("b", 1, msg("b", 1));
  box.accept("a", 1, msg("a", 1));
  assert.deepEqual(got, ["b:1", "a:1", "a:2"]);
});
