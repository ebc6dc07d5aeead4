// Shared test helpers: fresh users, waiting for events.
import { randomBytes } from "node:crypto";
import { after, before } from "node:test";
import { Client } from "../dist/index.js";
import { Server } from "./server.mjs";

export const PASSWORD = "secret-pw";

export function uniqueName(prefix = "u") {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

/** A connected client logged in as a fresh user; `opts` go to the Client. */
export async function newUser(server, opts = {}) {
  const client = new Client({ urls: server.url, ...opts });
  await client.connect();
  const username = uniqueName();
  const id = await client.register(username, PASSWORD);
  await client.login(username, PASSWORD);
  client.username = username;
  return { client, id, username };
}

/**
 * A real `im serve` for the calling test file: started before its first test (with `env`,
 * IM_* settings), stopped after its last, closing every client in `clients` first.
 * `user(opts)` is newUser on it, its client kept for closing.
 */
export function nodeForThisFile(env = {}) {
  const node = { server: null, clients: [] };
  node.user = async (opts) => {
    const made = await newUser(node.server, opts);
    node.clients.push(made.client);
    return made;
  };
  before(async () => {
    node.server = await new Server(env).start();
  });
  after(async () => {
    for (const c of node.clients) await c.close();
    await node.server.dispose();
  });
  return node;
}

/**
 * Collect the events `name` of `client`; `until(n)` resolves once n have come (rejecting if
 * they have not come within `ms`: a wait, not a timing assertion).
 */
export function collect(client, name) {
  const items = [];
  const waiters = [];
  client.on(name, (item) => {
    items.push(item);
    for (const w of [...waiters]) if (items.length >= w.n) (waiters.splice(waiters.indexOf(w), 1), w.resolve(items));
  });
  items.until = (n, ms = 15_000) =>
    items.length >= n
      ? Promise.resolve(items)
      : new Promise((resolve, reject) => {
          const w = { n, resolve };
          waiters.push(w);
          setTimeout(() => reject(new Error(`only ${items.length} of ${n} "${name}" events came`)), ms).unref();
        });
  return items;
}

/** The next event `name` of `client` that `match` accepts. */
export function nextEvent(client, name, match = () => true, ms = 15_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (off(), reject(new Error(`no "${name}" event came`))), ms);
    const off = client.on(name, (event) => {
      if (!match(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

/** Every message stored for `username`, read by a fresh session syncing each conversation from 0. */
export async function storedFor(server, username) {
  const reader = new Client({ urls: server.url, terminal: "reader", autoReconnect: false });
  await reader.connect();
  try {
    await reader.login(username, PASSWORD);
    const out = [];
    for (const conv of await reader.conversations()) {
      let after = 0;
      for (;;) {
        const page = await reader.sync(conv.conv, after, 200);
        out.push(...page.msgs);
        if (!page.hasMore || page.msgs.length === 0) break;
        after = page.msgs[page.msgs.length - 1].seq;
      }
    }
    return out;
  } finally {
    await reader.close();
  }
}

/**
 * A WebSocket class with a switch on the network between one client and the node: while
 * `down`, new connections go to a closed port (refused, as by a dead network); `dropAll()`
 * closes the open ones under the client; `dropPush(data)` returning true loses that incoming
 * message (a push lost on the way). The node on the other side is the real one.
 */
export function flakyNetwork() {
  const net = { down: false, sockets: new Set(), dropPush: null };
  class FlakyWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(net.down ? "ws://127.0.0.1:1/ws" : url, protocols);
      net.sockets.add(this);
      this.addEventListener("close", () => net.sockets.delete(this));
    }
    set onmessage(handler) {
      super.onmessage = handler && ((ev) => (net.dropPush?.(ev.data) ? undefined : handler(ev)));
    }
    get onmessage() {
      return super.onmessage;
    }
  }
  net.WebSocket = FlakyWebSocket;
  net.dropAll = () => {
    for (const socket of net.sockets) socket.close();
  };
  return net;
}

/** Per conversation, the seqs of `messages` in the order they came. */
export function seqsByConv(messages) {
  const out = {};
  for (const m of messages) (out[m.conv] ??= []).push(m.seq);
  return out;
}

export const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
