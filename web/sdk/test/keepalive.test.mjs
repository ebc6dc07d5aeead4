// PING keepalive against a real `im serve` with a short idle timeout: a pinging client stays,
// a silent one is closed (4003); a connection that stops answering is given up and replaced.
import assert from "node:assert/strict";
import { test } from "node:test";
import { flakyNetwork, newUser, nextEvent, nodeForThisFile } from "./helpers.mjs";

const node = nodeForThisFile({ IM_IDLE_TIMEOUT: "1.5" });
const { clients } = node;

test("PINGs keep an idle session open past the server's idle timeout; silence gets 4003", async () => {
  const pinging = (await newUser(node.server, { pingIntervalMs: 250, autoReconnect: false })).client;
  const silent = (await newUser(node.server, { pingIntervalMs: 0, autoReconnect: false })).client;
  clients.push(pinging, silent);
  const closed = await nextEvent(silent, "disconnected");
  assert.equal(closed.code, 4003);
  // the silent one was idle as long as the pinging one: only the pings kept this one open
  assert.equal(pinging.connected, true);
  await pinging.ping();
});

test("a connection that stops answering PINGs is given up, and the client reconnects", async () => {
  const net = flakyNetwork();
  const { client } = await newUser(node.server, { WebSocket: net.WebSocket, pingIntervalMs: 200, reconnectDelayMs: 50 });
  clients.push(client);
  net.dropPush = () => true; // nothing reaches the client any more, PONGs included
  const gone = await nextEvent(client, "disconnected");
  assert.equal(gone.willReconnect, true);
  net.dropPush = null;
  const back = await nextEvent(client, "reconnected");
  assert.equal(back.reconnects, 1);
  await client.ping();
});
