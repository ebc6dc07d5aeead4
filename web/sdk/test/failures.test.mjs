// Gray failures against a real `im serve`: a send refused with 5001 UNAVAILABLE is retried
// with its cmid (bounded), and a node that stops answering (SIGSTOP) is left by an idle
// client through its PINGs. Outcomes only: what the application got, what was stored.
import assert from "node:assert/strict";
import { test } from "node:test";
import { decodeBody, decodeFrame, encodeFrame, Op, ServerError } from "../dist/index.js";
import { collect, nextEvent, nodeForThisFile, storedFor } from "./helpers.mjs";

const node = nodeForThisFile();
const user = node.user;
const fast = { reconnectDelayMs: 20, maxReconnectDelayMs: 100 };

/**
 * A WebSocket class that answers the first `times` SENDs itself with ERROR 5001, as a node
 * whose store is down would (they never reach the node); everything else goes to the real one.
 */
function refusingNetwork(times) {
  const net = { refused: [] };
  net.WebSocket = class extends WebSocket {
    send(data) {
      const frame = decodeFrame(data instanceof Uint8Array ? data : new Uint8Array(data));
      if (frame.op === Op.SEND && net.refused.length < times) {
        net.refused.push(decodeBody(frame.body)["cmid"]);
        const error = encodeFrame(Op.ERROR, frame.reqId, { code: 5001, message: "storage is unavailable; retry later" });
        setTimeout(() => this.onmessage?.({ data: error.slice().buffer }), 0);
        return;
      }
      super.send(data);
    }
  };
  return net;
}

test("a send refused with 5001 is sent again with its cmid: one ack, stored once, pushed once", async () => {
  const net = refusingNetwork(2);
  const alice = await user({ ...fast, WebSocket: net.WebSocket });
  const bob = await user(fast);
  await bob.client.conversations();
  const bobGot = collect(bob.client, "message");
  const ack = await alice.client.send(bob.id, "through", { cmid: "refused-twice" });
  assert.deepEqual(net.refused, ["refused-twice", "refused-twice"]);
  assert.equal(alice.client.sendRetried, 2);
  const [got] = await bobGot.until(1);
  assert.equal(got.seq, ack.seq);
  const stored = await storedFor(node.server, bob.username);
  assert.deepEqual(stored.map((m) => m.cmid), ["refused-twice"]);
});

test("5001 reaches the application after the last retry", async () => {
  const net = refusingNetwork(Infinity);
  const alice = await user({ ...fast, WebSocket: net.WebSocket, sendRetries: 1 });
  const bob = await user(fast);
  await assert.rejects(alice.client.send(bob.id, "never"), (exc) => exc instanceof ServerError && exc.code === 5001);
  assert.equal(alice.client.sendRetried, 1);
  assert.equal(net.refused.length, 2);
});

test("an idle client leaves a node that stopped answering (SIGSTOP), and comes back after", async () => {
  const bob = await user({ ...fast, pingIntervalMs: 200, pingTimeoutMs: 500 });
  const alice = await user(fast);
  await bob.client.conversations();
  const bobGot = collect(bob.client, "message");
  const pid = node.server.proc.pid;
  const gone = nextEvent(bob.client, "disconnected");
  process.kill(pid, "SIGSTOP");
  let dropped;
  try {
    // bob sends nothing: only his PINGs can tell the node stopped answering
    dropped = await gone;
  } finally {
    process.kill(pid, "SIGCONT");
  }
  assert.equal(dropped.willReconnect, true);
  await nextEvent(bob.client, "reconnected");
  const ack = await alice.client.send(bob.id, "after the freeze");
  const [got] = await bobGot.until(1);
  assert.equal(got.seq, ack.seq);
});
