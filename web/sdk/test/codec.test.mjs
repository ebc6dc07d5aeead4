// Frame and MessagePack codec round trips (no server): header layout, every integer width,
// ids above 2^53 kept exact, the protocol doc's hex dumps decoded.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  decodeBody,
  decodeFrame,
  decodeMsgpack,
  encodeFrame,
  encodeMsgpack,
  Ext,
  Flag,
  fromWire,
  Op,
  toId,
} from "../dist/index.js";

const hex = (s) => Uint8Array.from(s.replace(/\s+/g, "").match(/../g).map((b) => parseInt(b, 16)));
const toHex = (bytes) => Buffer.from(bytes).toString("hex");

test("frame header is 20 bytes little-endian: version, op, flags, req_id, target, body_len", () => {
  const target = 2n ** 63n + 5n; // beyond 2^53 and beyond int64
  const bytes = encodeFrame(Op.SEND, 0xdeadbeef, { cmid: "c-1", content: "hi" }, target, Flag.GROUP | Flag.RETRY);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getUint8(0), 1);
  assert.equal(view.getUint8(1), 0x10);
  assert.equal(view.getUint16(2, true), 3);
  assert.equal(view.getUint32(4, true), 0xdeadbeef);
  assert.equal(view.getBigUint64(8, true), target);
  assert.equal(view.getUint32(16, true), bytes.length - 20);
  const frame = decodeFrame(bytes);
  assert.deepEqual(
    { op: frame.op, flags: frame.flags, reqId: frame.reqId, target: frame.target, version: frame.version },
    { op: Op.SEND, flags: 3, reqId: 0xdeadbeef, target, version: 1 },
  );
  assert.deepEqual(decodeBody(frame.body), { cmid: "c-1", content: "hi" });
});

test("an empty body is zero bytes and decodes as the empty map", () => {
  const bytes = encodeFrame(Op.PING, 7);
  assert.equal(bytes.length, 20);
  assert.deepEqual(decodeBody(decodeFrame(bytes).body), {});
  assert.deepEqual(decodeBody(hex("80")), {});
});

test("frames that lie about their length, or are shorter than a header, are refused", () => {
  const bytes = encodeFrame(Op.PING, 1, { a: 1 });
  assert.throws(() => decodeFrame(bytes.subarray(0, 19)), /shorter than its header/);
  assert.throws(() => decodeFrame(bytes.subarray(0, bytes.length - 1)), /body_len/);
});

test("the protocol doc's LOGIN example (15.1) encodes byte for byte", () => {
  const expected = hex(`
    01 03 00 00 01 00 00 00  00 00 00 00 00 00 00 00
    30 00 00 00 83 a8 75 73  65 72 6e 61 6d 65 a5 61
    6c 69 63 65 a8 70 61 73  73 77 6f 72 64 a9 73 65
    63 72 65 74 2d 70 77 a8  74 65 72 6d 69 6e 61 6c
    a3 69 6f 73`);
  const bytes = encodeFrame(Op.LOGIN, 1, { username: "alice", password: "secret-pw", terminal: "ios" });
  assert.equal(toHex(bytes), toHex(expected));
});

test("the protocol doc's MSG_PUSH example (15.5) decodes with a 64-bit id as bigint", () => {
  const frame = decodeFrame(hex(`
    01 40 00 00 00 00 00 00  02 00 00 00 00 00 00 00
    50 00 00 00 89 a2 69 64  cf 66 b2 14 cb 09 e4 00
    01 a4 63 6f 6e 76 a4 70  31 5f 32 a3 73 65 71 01
    a4 66 72 6f 6d 01 a2 74  6f 02 a4 63 6d 69 64 a3
    63 2d 31 a4 74 79 70 65  01 a7 63 6f 6e 74 65 6e
    74 a6 68 69 20 62 6f 62  a2 74 73 cf 00 00 01 9b
    76 da a8 7b`));
  assert.equal(frame.op, Op.MSG_PUSH);
  assert.equal(frame.target, 2n);
  const message = fromWire(decodeBody(frame.body));
  assert.deepEqual(message, {
    id: 7400000000000000001n, conv: "p1_2", seq: 1, from: 1n, to: 2n, cmid: "c-1", type: 1, content: "hi bob",
    ts: 1767225600123,
  });
});

test("integers round-trip at every MessagePack width, signed and unsigned", () => {
  const values = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
    -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER];
  for (const v of values) assert.equal(decodeMsgpack(encodeMsgpack(v)), v, `value ${v}`);
  const wide = [2n ** 53n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, -(2n ** 53n) - 1n, -(2n ** 63n)];
  for (const v of wide) assert.equal(decodeMsgpack(encodeMsgpack(v)), v, `value ${v}`);
  assert.throws(() => encodeMsgpack(2n ** 64n), /64 bits/);
});

test("the shortest integer form is written, and every form is read", () => {
  assert.equal(toHex(encodeMsgpack(5n)), "05");
  assert.equal(toHex(encodeMsgpack(3002)), "cd0bba");
  assert.equal(toHex(encodeMsgpack(7400000000000000001n)), "cf66b214cb09e40001");
  assert.equal(toHex(encodeMsgpack(-1)), "ff");
  // the same id as fixint, uint8, uint16, uint32, uint64, int8, int64: one value
  for (const form of ["07", "cc07", "cd0007", "ce00000007", "cf0000000000000007", "d007", "d30000000000000007"]) {
    assert.equal(toId(decodeMsgpack(hex(form))), 7n, form);
  }
});

test("ids become bigint whatever width the server used; counts stay numbers", () => {
  const wire = {
    group: 12, name: "g", owner: 2n ** 62n, members: 3, max_members: 2000, created_at: 1767225600123, mute_all: false,
    join_mode: "open", role: "owner", avatar: "", notice: "",
  };
  const info = fromWire(decodeMsgpack(encodeMsgpack(wire)));
  assert.equal(info.group, 12n);
  assert.equal(info.owner, 2n ** 62n);
  assert.equal(info.members, 3);
  assert.equal(info.maxMembers, 2000);
  assert.equal(info.joinMode, "open");
  const event = fromWire({ event: "joined", group: 1, actor: 2, users: [3, 2n ** 60n], role: "", until: 0, ts: 5 });
  assert.deepEqual(event.users, [3n, 2n ** 60n]);
  // message content is the application's: left as decoded
  const msg = fromWire({ id: 1, content: { user: 5, id: 6 }, mentions: [7] });
  assert.deepEqual(msg.content, { user: 5, id: 6 });
  assert.deepEqual(msg.mentions, [7n]);
});

test("strings, binaries, floats, nil, booleans, nested maps and arrays round-trip", () => {
  const value = {
    s: "héllo ✓ 😀", long: "x".repeat(70000), empty: "", bin: new Uint8Array([0, 1, 255]), f: 1.5, neg: -2.25,
    nil: null, t: true, f2: false, arr: [1, [2, [3]], { k: "v" }], big: Array.from({ length: 70000 }, (_, i) => i % 7),
    ["__proto__"]: "plain key",
  };
  const back = decodeMsgpack(encodeMsgpack(value));
  assert.equal(back.s, value.s);
  assert.equal(back.long, value.long);
  assert.equal(back.empty, "");
  assert.deepEqual(back.bin, value.bin);
  assert.equal(back.f, 1.5);
  assert.equal(back.neg, -2.25);
  assert.equal(back.nil, null);
  assert.equal(back.t, true);
  assert.equal(back.f2, false);
  assert.deepEqual(back.arr, value.arr);
  assert.deepEqual(back.big, value.big);
  assert.equal(Object.getPrototypeOf(back), Object.prototype);
  // keys holding undefined are left out of a map
  assert.deepEqual(decodeMsgpack(encodeMsgpack({ a: 1, b: undefined })), { a: 1 });
});

test("bad MessagePack is refused: truncated, trailing bytes, invalid UTF-8; ext kept opaque", () => {
  assert.throws(() => decodeMsgpack(hex("cd 0b")), /truncated/);
  assert.throws(() => decodeMsgpack(hex("01 02")), /trailing/);
  assert.throws(() => decodeMsgpack(hex("a2 c3 28")), /UTF-8/);
  assert.throws(() => decodeMsgpack(hex("c1")), /invalid/);
  const ext = decodeMsgpack(hex("d4 05 aa"));
  assert.ok(ext instanceof Ext);
  assert.equal(ext.type, 5);
  assert.deepEqual(ext.data, new Uint8Array([0xaa]));
  assert.throws(() => decodeBody(hex("93 01 02 03")), /not a map/);
});
