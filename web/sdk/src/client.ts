/**
 * The edgeim client: one WebSocket to a node, requests correlated by req_id, pushes as typed
 * events, and the reliability rules of sdk/client.py (the Python SDK):
 *
 * - After a drop (not a kick, a logout or close()) it reconnects to the next URL in turn,
 *   waiting a backoff that doubles per failed attempt up to a cap, each wait scaled by a random
 *   factor in [0.5, 1) so that the clients of a dead node do not all come back at once. It logs
 *   in with its token, resends every unacknowledged send with its original cmid (flag RETRY:
 *   the server stores each once and acks it with the original ids), then catches up with SYNC.
 * - "message" events carry each (conv, seq) once, in seq order per conversation, whether the
 *   message came as a push, from a catch-up, or both. A push beyond a gap waits until the gap
 *   fills (a late push), or a SYNC of that conversation (after gapSyncDelayMs) shows what is
 *   missing or that the missing seqs are not this user's (a group before their join).
 * - This client's own sends are not "message" events: their SendAck is the answer.
 * - A send refused with 5001 UNAVAILABLE is sent again with its cmid (sendRetries times, with
 *   backoff) before the refusal reaches the application; a PING unanswered within
 *   pingTimeoutMs drops the connection, so an idle client leaves a frozen node.
 *
 * The ordering and dedup state lives in inbox.ts; this file is the network side of it.
 */
import { DisconnectedError, FileTransferError, RequestTimeoutError, ServerError } from "./errors.js";
import { Emitter, type ClientEvents, type EventName, type Handler } from "./events.js";
import { decodeBody, decodeFrame, encodeFrame, type Frame } from "./frame.js";
import { fromWire, toId, withConversationDefaults, withMessageDefaults, withPageDefaults } from "./ids.js";
import { Inbox } from "./inbox.js";
import { CloseCode, ErrorCode, Flag, MAX_LIST, Op, SUBPROTOCOL } from "./protocol.js";
import type {
  CallStarted,
  Changes,
  ForwardOptions,
  ReactionEvent,
  Content,
  ConvSetOptions,
  ConvState,
  ConversationInfo,
  ConversationList,
  FileDownloadGrant,
  FileUploadGrant,
  FriendInfo,
  FriendRequestInfo,
  GroupCreateOptions,
  GroupInfo,
  GroupUpdateOptions,
  GroupUsersDone,
  GroupCreated,
  GroupAdd,
  InvitationInfo,
  IdLike,
  JoinRequestList,
  JoinResult,
  LoginOk,
  MemberInfo,
  Message,
  Page,
  PasswordChanged,
  ProfileChange,
  PinInfo,
  PinList,
  ReadMark,
  ReadersPage,
  SearchPage,
  SendAck,
  UserPresence,
  UserProfile,
  UserSettings,
  ViewEvent,
} from "./types.js";

export interface ClientOptions {
  /** One node's URL (ws://host:port/ws) or several: connect takes the first that answers. */
  urls: string | string[];
  /** The session's terminal (section 8.2): 1-16 of [a-z0-9_-]. Default "web". */
  terminal?: string;
  /** Reconnect after a drop, resend unacked sends, catch up. Default true. */
  autoReconnect?: boolean;
  /** How long a request waits for its answer. Default 30000. */
  requestTimeoutMs?: number;
  /** The WebSocket implementation. Default globalThis.WebSocket. */
  WebSocket?: typeof WebSocket;
  /** The fetch implementation for upload/download. Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** First reconnect wait; doubles per failed attempt. Default 250. */
  reconnectDelayMs?: number;
  /** Longest reconnect wait. Default 5000. */
  maxReconnectDelayMs?: number;
  /**
   * PING interval (section 8.3): a PING unanswered within pingTimeoutMs, or no frame at all for
   * two intervals, means a dead connection (a frozen node keeps its socket open): it is dropped
   * and the client reconnects to the next URL. 0 disables. Default 15000.
   */
  pingIntervalMs?: number;
  /** How long a PING may go unanswered before the connection counts as dead. Default 10000. */
  pingTimeoutMs?: number;
  /**
   * Times a send refused with 5001 UNAVAILABLE (a backend of the node is down for now) is sent
   * again with the same cmid, after reconnectDelayMs doubled per attempt (capped, jittered),
   * before the refusal reaches the application. 0: at once. Default 5.
   */
  sendRetries?: number;
  /** How long a gap may stay open before the conversation is synced; < 0 never. Default 500. */
  gapSyncDelayMs?: number;
  /** Requests in flight at once (the server refuses more than 256). Default 128. */
  maxInFlight?: number;
}

export interface SendOptions {
  /** Content type (section 10.5): 1 text (the default), 2 image, 3 file, ... */
  type?: number;
  /** Client message id; a random one by default. Reuse it only to retry the same message. */
  cmid?: string;
  /** A reply: the id of an earlier message of the conversation it quotes (REPLY_NOT_FOUND if none you may read). */
  replyTo?: IdLike;
}

export interface GroupSendOptions extends SendOptions {
  mentions?: IdLike[];
  mentionAll?: boolean;
}

export interface SearchOptions {
  conv?: string;
  /** A message id from an earlier page (its last msg's id); 0 from the newest. */
  before?: IdLike;
  limit?: number;
}

type WireBody = Record<string, unknown>;

interface Pending {
  resolve: (frame: Frame) => void;
  reject: (exc: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

interface UnackedSend {
  target: bigint;
  flags: number;
  body: WireBody;
  resolve: (ack: SendAck) => void;
  reject: (exc: Error) => void;
}

/** One WebSocket and what the client knows about it. */
interface Conn {
  ws: WebSocket;
  url: string;
  opened: boolean;
  /** Resolves when the socket's close event has come. */
  closed: Promise<void>;
}

/** Errors after which a token is no use: the application must log in with the password. */
const FATAL_LOGIN = new Set<number>([
  ErrorCode.TOKEN_EXPIRED,
  ErrorCode.TOKEN_INVALID,
  ErrorCode.ACCOUNT_DISABLED,
  ErrorCode.ACCOUNT_DELETED,
]);
/** Close codes after which the client must not come back by itself (section 13). */
const NO_RECONNECT = new Set<number>([CloseCode.REPLACED, CloseCode.LOGGED_OUT]);
const OPEN = 1; // WebSocket.OPEN, without relying on the implementation's static

/** What send() and sendGroup() put in the SEND body. */
function sendBody(content: Content, opts: GroupSendOptions): WireBody {
  const body: WireBody = { cmid: opts.cmid ?? newCmid(), content, type: opts.type ?? 1 };
  if (opts.mentions?.length) body["mentions"] = opts.mentions.map(toId);
  if (opts.mentionAll) body["mention_all"] = true;
  if (opts.replyTo !== undefined && toId(opts.replyTo) !== 0n) body["reply_to"] = toId(opts.replyTo);
  return body;
}

/** A random cmid; getRandomValues works in insecure browser contexts too (randomUUID does not). */
function newCmid(): string {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Don't let a housekeeping timer keep Node.js alive (no-op in browsers). */
function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}

/** The largest seq: a SYNC after it returns no messages (its changes only). */
const MAX_SEQ = 9223372036854775807n;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class Client {
  readonly urls: string[];
  terminal: string;
  autoReconnect: boolean;
  requestTimeoutMs: number;
  reconnectDelayMs: number;
  maxReconnectDelayMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  sendRetries: number;
  gapSyncDelayMs: number;
  /**
   * Per conversation, the change revision up to which this client knows every change in
   * place: edits, reactions, recalls (moved by syncChanges; a push alone does not say no
   * change came before it).
   */
  readonly revs = new Map<string, number>();
  /** Sends sent again after a 5001 UNAVAILABLE. */
  sendRetried = 0;
  /** Connections given up because a PING went unanswered. */
  pingsMissed = 0;
  /** The URL of the node this client is (or was last) connected to. */
  url: string;
  userId: bigint | null = null;
  /** The token of the latest login; reconnects log in with it. */
  token: string | null = null;
  /** The close code of the last connection, if the server sent one. */
  closeCode: number | null = null;
  /** Reconnections made after drops. */
  reconnects = 0;
  /**
   * Per conversation, the seq up to which the application has every message: where a
   * catch-up starts. An application that keeps messages across restarts sets it before
   * connecting. conversations() sets it to `lastSeq` for conversations without an entry (so
   * "message" events are what comes after the listing); a conversation without an entry is
   * otherwise caught up from its first message.
   */
  get lastSeqs(): Map<string, number> {
    return this.inbox.lastSeqs;
  }

  private readonly WS: typeof WebSocket;
  private readonly fetchImpl: typeof fetch | undefined;
  private readonly events = new Emitter();
  private conn: Conn | null = null;
  private urlIndex = 0;
  private reqCounter = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly maxInFlight: number;
  private inFlight = 0;
  private readonly windowWaiters: (() => void)[] = [];
  // cmid -> what a resend after a reconnect needs; in insertion (= first send) order
  private readonly unacked = new Map<string, UnackedSend>();
  private closing = false;
  private reconnecting: Promise<void> | null = null;
  // while a reconnect runs, new sends wait in `unacked`: it sends them after the login
  private paused = false;
  private readonly inbox = new Inbox(
    (message) => this.emit("message", message),
    (conv) => this.scheduleGapSync(conv),
    (conv) => this.cancelGapSync(conv),
  );
  private readonly gapTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly gapSyncing = new Set<string>();
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  // cmid -> 5001 refusals so far; the timers of the retries waiting
  private readonly refusals = new Map<string, number>();
  private readonly retryTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private lastRxAt = 0;
  // frames that came as Blobs (a WebSocket that ignores binaryType) are read in order
  private rxChain: Promise<void> = Promise.resolve();

  constructor(options: ClientOptions) {
    this.urls = typeof options.urls === "string" ? [options.urls] : [...options.urls];
    if (this.urls.length === 0) throw new TypeError("Client needs at least one URL");
    this.url = this.urls[0]!;
    this.terminal = options.terminal ?? "web";
    this.autoReconnect = options.autoReconnect ?? true;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.reconnectDelayMs = options.reconnectDelayMs ?? 250;
    this.maxReconnectDelayMs = options.maxReconnectDelayMs ?? 5_000;
    this.pingIntervalMs = options.pingIntervalMs ?? 15_000;
    this.pingTimeoutMs = options.pingTimeoutMs ?? 10_000;
    this.sendRetries = options.sendRetries ?? 5;
    this.gapSyncDelayMs = options.gapSyncDelayMs ?? 500;
    this.maxInFlight = options.maxInFlight ?? 128;
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (!WS)
      throw new TypeError("no WebSocket implementation: pass options.WebSocket (Node.js 20: run with --experimental-websocket)");
    this.WS = WS;
    this.fetchImpl = options.fetch ?? globalThis.fetch?.bind(globalThis);
  }

  // -- events ---------------------------------------------------------------------------------

  /** Listen to an event; returns a function that stops listening. */
  on<K extends EventName>(name: K, handler: Handler<K>): () => void {
    return this.events.on(name, handler);
  }

  off<K extends EventName>(name: K, handler: Handler<K>): void {
    this.events.off(name, handler);
  }

  private emit<K extends EventName>(name: K, event: ClientEvents[K]): void {
    this.events.emit(name, event);
  }

  // -- connection -----------------------------------------------------------------------------

  /** True while the WebSocket is open. */
  get connected(): boolean {
    return this.conn !== null && this.conn.opened && this.conn.ws.readyState === OPEN;
  }

  /** Sends waiting for their SendAck (resent after a reconnect). */
  get pendingSends(): number {
    return this.unacked.size;
  }

  /**
   * Open the WebSocket: the current URL, or if it cannot be reached each other one in turn
   * (rejects with the last failure when none answers). Then log in.
   */
  async connect(): Promise<void> {
    this.closing = false;
    let last: unknown;
    for (let tries = 0; tries < this.urls.length; tries++) {
      try {
        await this.open(this.urls[this.urlIndex]!);
        return;
      } catch (exc) {
        last = exc;
        this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      }
    }
    throw last;
  }

  private open(url: string): Promise<void> {
    const ws = new this.WS(url, SUBPROTOCOL);
    ws.binaryType = "arraybuffer";
    let markClosed!: () => void;
    const conn: Conn = { ws, url, opened: false, closed: new Promise<void>((r) => (markClosed = r)) };
    this.conn = conn;
    this.url = url;
    this.closeCode = null;
    return new Promise<void>((resolve, reject) => {
      // a node that swallows the handshake must not hang connect() forever
      const timer = setTimeout(() => {
        if (conn.opened) return;
        if (this.conn === conn) this.conn = null;
        ws.close();
        reject(new DisconnectedError(`timed out connecting to ${url}`));
      }, this.requestTimeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        if (this.conn !== conn) {
          // abandoned meanwhile (the timeout above, or close())
          ws.close();
          return reject(new DisconnectedError(`connection to ${url} abandoned`));
        }
        conn.opened = true;
        this.lastRxAt = Date.now();
        this.startPing(conn);
        this.emit("connected", { url });
        resolve();
      };
      ws.onmessage = (ev: MessageEvent) => this.onData(conn, ev.data);
      const failed = (code: number) => {
        clearTimeout(timer);
        if (this.conn === conn) this.conn = null;
        reject(new DisconnectedError(`cannot connect to ${url}`, code));
      };
      // Node 20's WebSocket fires "error" but no "close" when it cannot connect, so an error
      // is the end of the connection here, before or after the open, not a prelude to a close
      ws.onerror = () => {
        if (!conn.opened) failed(1006);
        else this.abandon(conn, "socket error");
      };
      ws.onclose = (ev: CloseEvent) => {
        markClosed();
        if (!conn.opened) failed(ev.code);
        else this.onClosed(conn, ev.code, ev.reason);
      };
    });
  }

  /** The connection ended (or was abandoned as dead): fail what waits on it, maybe reconnect. */
  private onClosed(conn: Conn, code: number, reason: string): void {
    if (this.conn !== conn) return;
    this.conn = null;
    this.stopPing();
    this.closeCode = code;
    for (const [reqId, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new DisconnectedError("connection closed", code));
      this.pending.delete(reqId);
    }
    const willReconnect = this.autoReconnect && !this.closing && this.token !== null && !NO_RECONNECT.has(code);
    this.emit("disconnected", { code, reason, willReconnect });
    if (willReconnect) {
      this.paused = true;
      // a reconnect under way (its login or catch-up failed with this drop) goes on by itself
      if (this.reconnecting === null) {
        const loop: Promise<void> = this.reconnectLoop().finally(() => {
          if (this.reconnecting === loop) this.reconnecting = null;
        });
        this.reconnecting = loop;
      }
    } else {
      this.failUnacked(new DisconnectedError("connection closed", code));
    }
  }

  /** Give up on the current connection now (dead, or a failed reconnect attempt). */
  private abandon(conn: Conn | null, reason: string): void {
    if (!conn) return;
    this.onClosed(conn, 1006, reason);
    try {
      conn.ws.close();
    } catch {
      // already closing
    }
  }

  /** Close the connection for good: no reconnect; unacked sends and requests reject. */
  async close(): Promise<void> {
    this.closing = true;
    for (const timer of this.gapTimers.values()) clearTimeout(timer);
    this.gapTimers.clear();
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    this.failUnacked(new DisconnectedError("client closed", this.closeCode));
    const conn = this.conn;
    if (conn) {
      if (conn.opened) this.onClosed(conn, CloseCode.NORMAL, "client closed");
      else this.conn = null; // still connecting (a reconnect attempt): its open() rejects
      conn.ws.close(CloseCode.NORMAL);
      // wait for the close handshake, but not forever (a dead peer never answers)
      await Promise.race([conn.closed, sleep(1000)]);
    }
    this.stopPing();
  }

  private startPing(conn: Conn): void {
    this.stopPing();
    if (this.pingIntervalMs <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.conn !== conn) return;
      if (Date.now() - this.lastRxAt > 2 * this.pingIntervalMs) {
        // nothing at all for two intervals, PONGs included: the connection is dead
        this.abandon(conn, "no answer to PING");
        return;
      }
      this.request(Op.PING, null, { internal: true, timeoutMs: this.pingTimeoutMs }).catch((exc) => {
        if (exc instanceof RequestTimeoutError && this.conn === conn) {
          this.pingsMissed++;
          this.abandon(conn, "no answer to PING"); // a frozen node: go elsewhere
        }
      });
    }, this.pingIntervalMs);
    unref(this.pingTimer);
  }

  private stopPing(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  /** The wait before reconnect attempt `attempt` (0, 1, ...): doubling, capped, jittered. */
  private backoff(attempt: number): number {
    const base = Math.min(this.maxReconnectDelayMs, this.reconnectDelayMs * 2 ** attempt);
    return base * (0.5 + Math.random() * 0.5);
  }

  /**
   * Until connected and caught up: the next URL, token login, resend, catch-up. Any step that
   * fails starts over with the next URL after a longer wait.
   */
  private async reconnectLoop(): Promise<void> {
    let attempt = 0;
    while (!this.closing) {
      await sleep(this.backoff(attempt++));
      if (this.closing) return;
      this.urlIndex = (this.urlIndex + 1) % this.urls.length;
      try {
        await this.open(this.urls[this.urlIndex]!);
        if (this.closing) return this.abandon(this.conn, "client closed");
        await this.loginWith(Op.TOKEN_LOGIN, { token: this.token, terminal: this.terminal }, true);
      } catch (exc) {
        if (exc instanceof ServerError && FATAL_LOGIN.has(exc.code)) {
          // the token will not do: the application must log in with the password
          this.closing = true;
          this.paused = false;
          this.failUnacked(exc);
          this.emit("error", exc);
          this.abandon(this.conn, "token refused");
          return;
        }
        this.abandon(this.conn, "reconnect attempt failed");
        continue;
      }
      this.reconnects++;
      attempt = 0;
      this.paused = false;
      const resent = [...this.unacked.keys()]; // in the order they were first sent
      for (const cmid of resent) this.transmit(cmid, true);
      let caughtUp = 0;
      try {
        caughtUp = await this.catchUpInternal(100, true);
        await this.catchUpChangesInternal(100, true);
      } catch (exc) {
        if (this.connected) this.emit("error", exc as Error);
      }
      if (this.connected) {
        this.reconnecting = null; // done: what "reconnected" listeners ask goes through
        this.emit("reconnected", { url: this.url, reconnects: this.reconnects, resent: resent.length, caughtUp });
        return;
      }
      if (this.closing) return;
      this.paused = true; // dropped again meanwhile: once more, from the top
    }
  }

  // -- requests -------------------------------------------------------------------------------

  private async acquire(): Promise<void> {
    if (this.inFlight < this.maxInFlight) {
      this.inFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.windowWaiters.push(resolve));
  }

  private release(): void {
    const next = this.windowWaiters.shift();
    if (next) next(); // the slot passes to the next waiter
    else this.inFlight--;
  }

  private nextReqId(): number {
    do this.reqCounter = (this.reqCounter % 0xffff_fffe) + 1; // 1 .. 2^32-1: 0 is for pushes
    while (this.pending.has(this.reqCounter));
    return this.reqCounter;
  }

  /**
   * Send one request and wait for its reply: the reply body as decoded MessagePack (wire
   * names, not yet in API shape). Rejects with ServerError for an ERROR reply,
   * DisconnectedError if the connection goes first, RequestTimeoutError after
   * requestTimeoutMs. `internal` requests are the reconnect's own, allowed while it runs.
   */
  async request(
    op: number,
    body: WireBody | null = null,
    opts: { target?: IdLike; flags?: number; internal?: boolean; timeoutMs?: number } = {},
  ): Promise<WireBody> {
    await this.acquire();
    let frame: Frame;
    try {
      const conn = this.conn;
      if (!conn || !conn.opened || conn.ws.readyState !== OPEN)
        throw new DisconnectedError(this.reconnecting ? "reconnecting" : "not connected", this.closeCode);
      if (this.reconnecting && !opts.internal) throw new DisconnectedError("reconnecting", this.closeCode);
      const reqId = this.nextReqId();
      const bytes = encodeFrame(op, reqId, body, opts.target ?? 0n, opts.flags ?? 0);
      frame = await new Promise<Frame>((resolve, reject) => {
        const timeoutMs = opts.timeoutMs ?? this.requestTimeoutMs;
        const timer = setTimeout(() => {
          this.pending.delete(reqId);
          reject(new RequestTimeoutError(`no answer to op 0x${op.toString(16)} within ${timeoutMs} ms`));
        }, timeoutMs);
        this.pending.set(reqId, { resolve, reject, timer });
        try {
          conn.ws.send(bytes);
        } catch (exc) {
          clearTimeout(timer);
          this.pending.delete(reqId);
          reject(new DisconnectedError(`send failed: ${String(exc)}`, this.closeCode));
        }
      });
    } finally {
      this.release();
    }
    const reply = decodeBody(frame.body);
    if (frame.op === Op.ERROR) throw new ServerError(Number(reply["code"]), String(reply["message"] ?? ""));
    return reply;
  }

  /** `request`, its reply in API shape. */
  private async call<T>(op: number, body: WireBody | null = null): Promise<T> {
    return fromWire<T>(await this.request(op, body));
  }

  /** `request` for ops whose reply is empty. */
  private async done(op: number, body: WireBody | null = null): Promise<void> {
    await this.request(op, body);
  }

  /** Every item of an id-keyed list: pages of MAX_LIST until `hasMore` is off. */
  private async all<T>(page: (after: bigint) => Promise<{ items: T[]; hasMore: boolean }>, key: (item: T) => bigint): Promise<T[]> {
    const items: T[] = [];
    let after = 0n;
    for (;;) {
      const got = await page(after);
      items.push(...got.items);
      if (!got.hasMore || got.items.length === 0) return items;
      after = key(got.items[got.items.length - 1]!);
    }
  }

  // -- incoming -------------------------------------------------------------------------------

  private onData(conn: Conn, data: unknown): void {
    if (this.conn !== conn) return;
    this.lastRxAt = Date.now();
    if (data instanceof ArrayBuffer) this.onFrame(new Uint8Array(data));
    else if (ArrayBuffer.isView(data)) this.onFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    else if (typeof Blob !== "undefined" && data instanceof Blob) {
      this.rxChain = this.rxChain.then(async () => {
        const bytes = new Uint8Array(await data.arrayBuffer());
        if (this.conn === conn) this.onFrame(bytes);
      });
    }
    // text messages: the server sends none
  }

  private onFrame(bytes: Uint8Array): void {
    let frame: Frame;
    let body: WireBody;
    try {
      frame = decodeFrame(bytes);
      if (frame.reqId !== 0) {
        const p = this.pending.get(frame.reqId);
        if (p) {
          this.pending.delete(frame.reqId);
          clearTimeout(p.timer);
          p.resolve(frame);
        }
        return;
      }
      body = decodeBody(frame.body);
    } catch (exc) {
      this.emit("error", exc as Error);
      return;
    }
    switch (frame.op) {
      case Op.MSG_PUSH: {
        const message = withMessageDefaults(fromWire<Message>(body));
        this.inbox.accept(message.conv, message.seq, message);
        break;
      }
      case Op.RECALL_PUSH:
        this.emit("recall", withMessageDefaults(fromWire<Message>(body)));
        break;
      case Op.EDIT_PUSH:
        this.emit("edit", withMessageDefaults(fromWire<Message>(body)));
        break;
      case Op.READ_PUSH:
        this.emit("read", fromWire(body));
        break;
      case Op.CONV_PUSH:
        this.emit("conv", fromWire(body));
        break;
      case Op.FRIEND_PUSH:
        this.emit("friend", fromWire(body));
        break;
      case Op.GROUP_PUSH:
        this.emit("group", fromWire(body));
        break;
      case Op.TYPING_PUSH:
        this.emit("typing", fromWire(body));
        break;
      case Op.PRESENCE_PUSH:
        this.emit("presence", fromWire(body));
        break;
      case Op.CALL_PUSH:
        this.emit("call", fromWire(body));
        break;
      case Op.PROFILE_PUSH:
        this.emit("profile", fromWire(body));
        break;
      case Op.REACTION_PUSH:
        this.emit("reaction", fromWire(body));
        break;
      case Op.PIN_PUSH:
        this.emit("pin", fromWire(body));
        break;
      case Op.VIEW_PUSH:
        this.emit("view", fromWire(body));
        break;
      case Op.KICKED:
        this.closing = true; // a kicked client must not log itself back in (close 4001 follows)
        this.emit("kicked", fromWire(body));
        break;
      case Op.ERROR:
        this.emit("error", new ServerError(Number(body["code"]), String(body["message"] ?? "")));
        break;
      default: // a push this SDK does not know: ignore (section 7)
    }
  }

  // -- delivery: gaps and catch-up (the ordering itself is inbox.ts) ---------------------------

  /** A seq came beyond a gap: SYNC the conversation if the gap is still open after a while
   * (a push lost between nodes; or one merely late, and then nothing is needed). */
  private scheduleGapSync(conv: string): void {
    if (this.gapSyncDelayMs < 0 || this.gapTimers.has(conv)) return;
    const timer = setTimeout(() => {
      this.gapTimers.delete(conv);
      // while disconnected or reconnecting, the reconnect's catch-up covers the gap
      if (this.inbox.hasGap(conv) && !this.gapSyncing.has(conv) && this.connected && !this.paused && !this.reconnecting && !this.closing)
        void this.fillGap(conv);
    }, this.gapSyncDelayMs);
    unref(timer);
    this.gapTimers.set(conv, timer);
  }

  private cancelGapSync(conv: string): void {
    const timer = this.gapTimers.get(conv);
    if (timer !== undefined) clearTimeout(timer);
    this.gapTimers.delete(conv);
  }

  private async fillGap(conv: string): Promise<void> {
    this.gapSyncing.add(conv);
    try {
      await this.catchUpConv(conv, 0, 100, false);
    } catch {
      // a drop: the reconnect catches up; anything else: the next push retries
    } finally {
      this.gapSyncing.delete(conv);
    }
  }

  /**
   * Emit as "message" every message this client has not had yet, in every conversation
   * (above `lastSeqs`, minus what came as a push already), in seq order per conversation.
   * The client's own sends still waiting for their ack are left out. Returns how many were
   * found. The reconnect calls it; an application may too (when it comes to the foreground).
   */
  async catchUp(limit = 100): Promise<number> {
    return this.catchUpInternal(limit, false);
  }

  private async catchUpInternal(limit: number, internal: boolean): Promise<number> {
    const lasts = new Map<string, number>();
    for (const c of await this.listConversations(internal)) lasts.set(c.conv, c.lastSeq);
    // a gap the list may not show yet
    for (const [conv, held] of this.inbox.gaps()) lasts.set(conv, Math.max(lasts.get(conv) ?? 0, held));
    let found = 0;
    for (const [conv, last] of lasts) {
      if (last > this.inbox.mark(conv)) found += await this.catchUpConv(conv, last, limit, internal);
    }
    return found;
  }

  /** SYNC `conv` from its mark to its end, emitting what is new. `last`: a seq the
   * conversation had reached before this started. */
  private async catchUpConv(conv: string, last: number, limit: number, internal: boolean): Promise<number> {
    let found = 0;
    let after = this.inbox.mark(conv);
    for (;;) {
      const page = await this.syncPage(conv, after, limit, internal);
      if (page.msgs.length === 0) {
        // nothing up to `last` is this user's to read
        if (after <= this.inbox.mark(conv)) this.inbox.cover(conv, last, true);
        return found;
      }
      for (const message of page.msgs) {
        // a page is every message from after + 1 on that this user may read: the seqs it
        // skips are not theirs (a group before their join)
        this.inbox.cover(conv, message.seq - 1, true);
        const own = message.from === this.userId && this.unacked.has(message.cmid);
        if (this.inbox.accept(conv, message.seq, own ? null : message) && !own) found++;
      }
      if (!page.hasMore) return found;
      after = page.msgs[page.msgs.length - 1]!.seq;
    }
  }

  private async syncPage(
    conv: string,
    afterSeq: number | bigint,
    limit: number,
    internal: boolean,
    changesAfter?: number,
  ): Promise<Page> {
    const body: WireBody = { conv, after_seq: afterSeq, limit };
    if (changesAfter !== undefined) body["changes_after"] = changesAfter;
    const reply = await this.request(Op.SYNC, body, { internal });
    return withPageDefaults(fromWire<Page>(reply));
  }

  private failUnacked(exc: Error): void {
    for (const [cmid, send] of this.unacked) {
      this.settled(cmid);
      send.reject(exc);
    }
  }

  // -- session --------------------------------------------------------------------------------

  async ping(): Promise<void> {
    await this.done(Op.PING);
  }

  /** Create an account; returns its user id. Does not log in. */
  async register(username: string, password: string, nickname = ""): Promise<bigint> {
    const reply = await this.request(Op.REGISTER, { username, password, nickname });
    return toId(reply["user_id"]);
  }

  /** Log in with the password, as `terminal` (default: the client's). */
  async login(username: string, password: string, terminal?: string): Promise<LoginOk> {
    if (terminal) this.terminal = terminal;
    return this.loginWith(Op.LOGIN, { username, password, terminal: this.terminal }, false);
  }

  /** Log in with a token from an earlier login (default: this client's latest). */
  async tokenLogin(token?: string, terminal?: string): Promise<LoginOk> {
    if (terminal) this.terminal = terminal;
    const use = token ?? this.token;
    if (!use) throw new TypeError("no token: log in with the password first");
    return this.loginWith(Op.TOKEN_LOGIN, { token: use, terminal: this.terminal }, false);
  }

  private async loginWith(op: number, body: WireBody, internal: boolean): Promise<LoginOk> {
    const ok = fromWire<LoginOk>(await this.request(op, body, { internal }));
    this.userId = ok.userId;
    this.token = ok.token;
    return ok;
  }

  /** End the session and revoke its token; the server then closes (4009): no reconnect. */
  async logout(): Promise<void> {
    this.closing = true;
    await this.done(Op.LOGOUT);
    this.token = null;
  }

  /** USER_FIND: the profile of the account with exactly this username (ServerError USER_NOT_FOUND, 3000, when none). */
  async userFind(username: string): Promise<UserProfile> {
    return this.call(Op.USER_FIND, { username });
  }

  /** USERS: the profiles of up to 100 users, in the order asked; unknown ids are left out. */
  async users(ids: IdLike[]): Promise<UserProfile[]> {
    if (ids.length === 0) return []; // the server requires at least one id
    const reply = await this.call<{ users: UserProfile[] }>(Op.USERS, { users: ids.map(toId) });
    return reply.users;
  }

  // -- accounts and profiles ------------------------------------------------------------------

  /** PROFILE_SET: change this user's profile; resolves to the profile now ("profile" events reach friends and group members). */
  async profileSet(change: ProfileChange): Promise<UserProfile> {
    return this.call(Op.PROFILE_SET, { nickname: change.nickname, avatar: change.avatar, bio: change.bio });
  }

  /** Upload an image to this user's avatar space (conv `a<user id>`) and make it the avatar. */
  async uploadAvatar(data: Blob | Uint8Array, mime: string, name = "avatar"): Promise<UserProfile> {
    const key = await this.upload(`a${this.userId}`, data, mime, name);
    return this.profileSet({ avatar: key });
  }

  /**
   * PASSWORD_CHANGE: the account's other sessions are closed and every earlier token refused;
   * this session stays and `token` becomes the fresh one.
   */
  async passwordChange(oldPassword: string, newPassword: string): Promise<PasswordChanged> {
    const changed = await this.call<PasswordChanged>(Op.PASSWORD_CHANGE, {
      old_password: oldPassword,
      new_password: newPassword,
    });
    this.token = changed.token;
    return changed;
  }

  /** ACCOUNT_DELETE: delete this account for good; the server then closes (4009): no reconnect. */
  async accountDelete(password: string): Promise<void> {
    this.closing = true;
    try {
      await this.done(Op.ACCOUNT_DELETE, { password });
    } catch (err) {
      this.closing = false;
      throw err;
    }
    this.token = null;
  }

  // -- messages -------------------------------------------------------------------------------

  /**
   * Send a message to a user and wait for its ack (the message is stored when this resolves).
   * `content` is a string for text, else a map of `opts.type`'s schema. If the connection
   * drops first and the client reconnects, the send is retried with the same cmid: it still
   * resolves once, with the ids of the one stored copy.
   */
  send(to: IdLike, content: Content, opts: SendOptions = {}): Promise<SendAck> {
    return this.sendMessage(toId(to), 0, sendBody(content, opts));
  }

  /** `send` to a group's conversation, mentioning `mentions` (members) or everyone (admins). */
  sendGroup(group: IdLike, content: Content, opts: GroupSendOptions = {}): Promise<SendAck> {
    return this.sendMessage(toId(group), Flag.GROUP, sendBody(content, opts));
  }

  private sendMessage(target: bigint, flags: number, body: WireBody): Promise<SendAck> {
    const cmid = body["cmid"] as string;
    return new Promise<SendAck>((resolve, reject) => {
      if (this.unacked.has(cmid)) return reject(new TypeError(`a send with cmid ${cmid} is already waiting for its ack`));
      this.unacked.set(cmid, { target, flags, body, resolve, reject });
      this.transmit(cmid, false);
    });
  }

  private transmit(cmid: string, retry: boolean): void {
    if (this.paused) return; // a reconnect is under way: it sends this one after the login, in order
    const send = this.unacked.get(cmid);
    if (!send) return;
    // a resend keeps the original's flags (GROUP above all: the target is a group id)
    const flags = send.flags | (retry ? Flag.RETRY : 0);
    this.request(Op.SEND, send.body, { target: send.target, flags, internal: true }).then(
      (reply) => {
        if (this.unacked.get(cmid) !== send) return; // settled meanwhile
        this.settled(cmid);
        const ack = fromWire<SendAck>(reply);
        this.inbox.accept(ack.conv, ack.seq, null); // the application has its own message
        send.resolve(ack);
      },
      (exc: Error) => {
        if (this.unacked.get(cmid) !== send) return;
        const refusals = this.refusals.get(cmid) ?? 0;
        if (exc instanceof ServerError && exc.code === ErrorCode.UNAVAILABLE && !this.closing && refusals < this.sendRetries) {
          // a backend of the node is down for now: the same cmid again, a little later
          this.refusals.set(cmid, refusals + 1);
          this.retryTimers.set(
            cmid,
            setTimeout(() => {
              this.retryTimers.delete(cmid);
              if (this.unacked.get(cmid) !== send || this.closing) return;
              this.sendRetried++;
              this.transmit(cmid, true); // (while a reconnect runs, it resends this one)
            }, this.backoff(refusals)),
          );
          return;
        }
        const resendable = exc instanceof DisconnectedError || exc instanceof RequestTimeoutError;
        if (resendable && this.autoReconnect && !this.closing && this.token !== null) {
          // kept in `unacked`: the reconnect resends it. No answer on a connection that
          // looks open: treat it as dead, which starts that reconnect.
          if (exc instanceof RequestTimeoutError) this.abandon(this.conn, "send timed out");
          return;
        }
        this.settled(cmid);
        send.reject(exc);
      },
    );
  }

  /** The send `cmid` has its answer: forget it. */
  private settled(cmid: string): void {
    this.unacked.delete(cmid);
    this.refusals.delete(cmid);
    const timer = this.retryTimers.get(cmid);
    if (timer !== undefined) clearTimeout(timer);
    this.retryTimers.delete(cmid);
  }

  /**
   * Messages of `conv` with seq > afterSeq, oldest first (one page). The page counts as
   * delivered: its messages are not emitted as "message" events afterwards. With
   * `changesAfter` (a change revision: `rev` of the previous such page, 0 the first time) the
   * page also lists, in `changed`, the messages up to afterSeq changed in place since
   * (edited, their reactions changed, recalled), as they are now (see changes()).
   */
  async sync(conv: string, afterSeq = 0, limit = 100, changesAfter?: number): Promise<Page> {
    const page = await this.syncPage(conv, afterSeq, limit, false, changesAfter);
    const last = page.msgs[page.msgs.length - 1];
    // a page is every message from afterSeq + 1 on: no gap up to its last seq
    if (last && afterSeq <= this.inbox.mark(conv)) this.inbox.cover(conv, last.seq, false);
    return page;
  }

  /** Messages of `conv` before beforeSeq (0: the newest), ascending; scroll back with msgs[0].seq. */
  async history(conv: string, beforeSeq = 0, limit = 50): Promise<Page> {
    return withPageDefaults(await this.call<Page>(Op.HISTORY, { conv, before_seq: beforeSeq, limit }));
  }

  /**
   * What changed in place in `conv` after change revision `afterRev` (edits, reactions,
   * recalls) among its messages up to `upToSeq` (default: all): the messages as they are now,
   * each once, their reactions and the revision to ask from next time (docs/protocol.md
   * 9.25.3). A message the user deleted for themselves comes as its `hidden` stub.
   */
  async changes(conv: string, upToSeq: number | bigint = MAX_SEQ, afterRev = 0, limit = 100): Promise<Changes> {
    return this.changesInternal(conv, upToSeq, afterRev, limit, false);
  }

  private async changesInternal(
    conv: string,
    upToSeq: number | bigint,
    afterRev: number,
    limit: number,
    internal: boolean,
  ): Promise<Changes> {
    const out: Changes = { conv, changed: [], reactions: [], rev: afterRev };
    for (;;) {
      const page = await this.syncPage(conv, upToSeq, limit, internal, out.rev);
      out.changed.push(...page.changed);
      out.reactions.push(...page.reactions.filter((r) => BigInt(r.seq) <= BigInt(upToSeq)));
      const moved = page.rev > out.rev;
      out.rev = Math.max(out.rev, page.rev);
      if (!page.changesMore || !moved) return out;
    }
  }

  /** `changes` of every message of `conv` since `revs` has it (0: since sent); `revs` moves past them. */
  async syncChanges(conv: string, limit = 100): Promise<Changes> {
    return this.syncChangesInternal(conv, limit, false);
  }

  private async syncChangesInternal(conv: string, limit: number, internal: boolean): Promise<Changes> {
    const found = await this.changesInternal(conv, MAX_SEQ, this.revs.get(conv) ?? 0, limit, internal);
    this.revs.set(conv, Math.max(this.revs.get(conv) ?? 0, found.rev));
    return found;
  }

  /**
   * Emit a "changes" event for each conversation this client holds messages of (`lastSeqs`;
   * in the others it has nothing to update) in which something changed in place while it was
   * away: `syncChanges` of each. A change seen before may come again: replacing is
   * idempotent. Returns how many messages were emitted; the reconnect calls it.
   */
  async catchUpChanges(limit = 100): Promise<number> {
    return this.catchUpChangesInternal(limit, false);
  }

  private async catchUpChangesInternal(limit: number, internal: boolean): Promise<number> {
    let found = 0;
    for (const [conv, seq] of [...this.lastSeqs]) {
      if (seq <= 0) continue;
      const changes = await this.syncChangesInternal(conv, limit, internal);
      if (changes.changed.length === 0) continue;
      this.emit("changes", changes);
      found += changes.changed.length;
    }
    return found;
  }

  /** Add the reaction `emoji` to message `seq` of `conv`; the message's reactions now. */
  async react(conv: string, seq: number, emoji: string): Promise<ReactionEvent> {
    return this.call<ReactionEvent>(Op.REACT, { conv, seq, emoji });
  }

  /** Take back this user's reaction `emoji` from message `seq` of `conv`. */
  async unreact(conv: string, seq: number, emoji: string): Promise<ReactionEvent> {
    return this.call<ReactionEvent>(Op.REACT, { conv, seq, emoji, remove: true });
  }

  /**
   * Forward messages `seqs` of `conv` to user `to` (or, with opts.group, group `to`) as new
   * messages of this user marked forwardedFrom; their acks, in order, once all are durable.
   */
  async forward(to: IdLike, conv: string, seqs: number[], opts: ForwardOptions = {}): Promise<SendAck[]> {
    const body: WireBody = { conv, seqs, cmid: opts.cmid ?? newCmid() };
    if (opts.hideSender) body["hide_sender"] = true;
    const reply = await this.request(Op.FORWARD, body, { target: toId(to), flags: opts.group ? Flag.GROUP : 0 });
    return fromWire<{ acks: SendAck[] }>(reply).acks;
  }

  /**
   * Every conversation (all pages), pinned first, then newest first. Conversations without a
   * `lastSeqs` entry get one at their `lastSeq`: "message" events are what comes after.
   */
  async conversations(): Promise<ConversationInfo[]> {
    const convs = await this.listConversations(false);
    for (const c of convs) {
      if (!this.lastSeqs.has(c.conv) && !this.inbox.hasGap(c.conv)) this.lastSeqs.set(c.conv, c.lastSeq);
    }
    return convs;
  }

  /** One page of the conversation list: from the top (cursor "") or an earlier page's nextCursor. */
  async conversationsPage(cursor = "", limit = 100): Promise<ConversationList> {
    const page = await this.call<ConversationList>(Op.CONVERSATIONS, { cursor, limit });
    page.convs = page.convs.map(withConversationDefaults);
    return page;
  }

  private async listConversations(internal: boolean): Promise<ConversationInfo[]> {
    const convs: ConversationInfo[] = [];
    let cursor = "";
    for (;;) {
      const page = fromWire<ConversationList>(await this.request(Op.CONVERSATIONS, { cursor, limit: MAX_LIST }, { internal }));
      convs.push(...page.convs.map(withConversationDefaults));
      if (!page.hasMore || page.convs.length === 0) return convs;
      cursor = page.nextCursor;
    }
  }

  /** Pin, mute or hide `conv` in this user's list; what is not given stays as it is. */
  async convSet(conv: string, opts: ConvSetOptions): Promise<ConvState> {
    return this.call(Op.CONV_SET, { conv, pinned: opts.pinned, muted: opts.muted, hidden: opts.hidden });
  }

  /** Mark `conv` read up to `seq`; returns the cursor now. */
  async read(conv: string, seq: number): Promise<ReadMark> {
    return this.call(Op.READ, { conv, seq });
  }

  /** Who has read message `seq` of `conv` (one page of user ids above `after`). */
  async readers(conv: string, seq: number, after: IdLike = 0n, limit = 100): Promise<ReadersPage> {
    return this.call(Op.READERS, { conv, seq, after: toId(after), limit });
  }

  /**
   * Replace the text of your own text message `seq` of `conv` (within the server's edit
   * window); returns it as edited (`editedAt` set). The other devices get an "edit" event.
   */
  async edit(conv: string, seq: number, text: string): Promise<Message> {
    return withMessageDefaults(await this.call<Message>(Op.EDIT, { conv, seq, content: text }));
  }

  /** Recall message `seq` of `conv`; returns its tombstone (others get a "recall" event). */
  async recall(conv: string, seq: number): Promise<Message> {
    return withMessageDefaults(await this.call<Message>(Op.RECALL, { conv, seq }));
  }

  /** Delete messages `seqs` of `conv` for this user only (all their devices; the other
   * members keep them): their sync and history pages carry them as stubs (`hidden`). */
  async deleteForMe(conv: string, seqs: number[]): Promise<ViewEvent> {
    return this.call(Op.DELETE_FOR_ME, { conv, seqs });
  }

  /** Clear this user's view of `conv` up to `seq` (0: the newest message); unread goes to 0. */
  async clearHistory(conv: string, seq = 0): Promise<ViewEvent> {
    return this.call(Op.CLEAR_HISTORY, { conv, seq });
  }

  /** Pin message `seq` of `conv` for its members (a group's owner and admins, either user of
   * a private conversation); the members' other devices get a "pin" event. */
  async pinMessage(conv: string, seq: number): Promise<PinInfo> {
    const pin = await this.call<PinInfo>(Op.PIN_MESSAGE, { conv, seq });
    return { ...pin, message: withMessageDefaults(pin.message) };
  }

  async unpinMessage(conv: string, seq: number): Promise<void> {
    await this.call(Op.UNPIN_MESSAGE, { conv, seq });
  }

  /** The message pins of `conv` that this user may read, newest pin first. */
  async pins(conv: string): Promise<PinList> {
    const list = await this.call<PinList>(Op.PINS, { conv });
    list.pins = list.pins.map((p) => ({ ...p, message: withMessageDefaults(p.message) }));
    return list;
  }

  /** One page of the user's messages containing `query`, newest first; the next page is
   * `before: page.msgs[page.msgs.length - 1].id`. */
  async search(query: string, opts: SearchOptions = {}): Promise<SearchPage> {
    const page = await this.call<SearchPage>(Op.SEARCH, {
      query,
      conv: opts.conv ?? "",
      before: toId(opts.before ?? 0n),
      limit: opts.limit ?? 20,
    });
    page.msgs = page.msgs.map(withMessageDefaults);
    return page;
  }

  // -- friends --------------------------------------------------------------------------------

  async friendRequest(user: IdLike, message = ""): Promise<void> {
    await this.done(Op.FRIEND_REQUEST, { user: toId(user), message });
  }
  async friendAccept(user: IdLike): Promise<void> {
    await this.done(Op.FRIEND_ACCEPT, { user: toId(user) });
  }
  async friendReject(user: IdLike): Promise<void> {
    await this.done(Op.FRIEND_REJECT, { user: toId(user) });
  }
  async friendDelete(user: IdLike): Promise<void> {
    await this.done(Op.FRIEND_DELETE, { user: toId(user) });
  }

  /** Every friend (all pages), by id. */
  async friends(): Promise<FriendInfo[]> {
    return this.all(async (after) => {
      const page = await this.friendsPage(after, MAX_LIST);
      return { items: page.friends, hasMore: page.hasMore };
    }, (f) => f.user);
  }

  async friendsPage(after: IdLike = 0n, limit = 100): Promise<{ friends: FriendInfo[]; hasMore: boolean }> {
    return this.call(Op.FRIENDS, { after: toId(after), limit });
  }

  /** Every pending friend request to this user (all pages). */
  async friendRequests(): Promise<FriendRequestInfo[]> {
    return this.all(async (after) => {
      const page = await this.friendRequestsPage(after, MAX_LIST);
      return { items: page.requests, hasMore: page.hasMore };
    }, (r) => r.user);
  }

  async friendRequestsPage(after: IdLike = 0n, limit = 100): Promise<{ requests: FriendRequestInfo[]; hasMore: boolean }> {
    return this.call(Op.FRIEND_REQUESTS, { after: toId(after), limit });
  }

  async friendRemark(user: IdLike, remark: string): Promise<void> {
    await this.done(Op.FRIEND_REMARK, { user: toId(user), remark });
  }
  async block(user: IdLike): Promise<void> {
    await this.done(Op.BLOCK, { user: toId(user) });
  }
  async unblock(user: IdLike): Promise<void> {
    await this.done(Op.UNBLOCK, { user: toId(user) });
  }

  /** Every user this user blocked (all pages), by id. */
  async blocks(): Promise<bigint[]> {
    return this.all(async (after) => {
      const page = await this.blocksPage(after, MAX_LIST);
      return { items: page.users, hasMore: page.hasMore };
    }, (u) => u);
  }

  async blocksPage(after: IdLike = 0n, limit = 100): Promise<{ users: bigint[]; hasMore: boolean }> {
    return this.call(Op.BLOCKS, { after: toId(after), limit });
  }

  // -- groups ---------------------------------------------------------------------------------

  /** Create a group with the caller as owner and `members` besides: `added` lists those
   * added, `invited` those whose groupAdd setting made the add an invitation. */
  async groupCreate(name: string, members: IdLike[] = [], opts: GroupCreateOptions = {}): Promise<GroupCreated> {
    const created = await this.call<GroupCreated>(Op.GROUP_CREATE, {
      name,
      members: members.map(toId),
      avatar: opts.avatar ?? "",
      notice: opts.notice ?? "",
      join_mode: opts.joinMode ?? "approval",
    });
    created.added ??= []; // a server from before invitations
    created.invited ??= [];
    return created;
  }

  async groupDissolve(group: IdLike): Promise<void> {
    await this.done(Op.GROUP_DISSOLVE, { group: toId(group) });
  }

  /** Change what is given; returns the group as it is now. */
  async groupUpdate(group: IdLike, opts: GroupUpdateOptions): Promise<GroupInfo> {
    return this.call(Op.GROUP_UPDATE, {
      group: toId(group),
      name: opts.name,
      avatar: opts.avatar,
      notice: opts.notice,
      join_mode: opts.joinMode,
    });
  }

  async groupInfo(group: IdLike): Promise<GroupInfo> {
    return this.call(Op.GROUP_INFO, { group: toId(group) });
  }

  /** Every group this user is a member of (all pages), by id. */
  async groups(): Promise<GroupInfo[]> {
    return this.all(async (after) => {
      const page = await this.groupsPage(after, MAX_LIST);
      return { items: page.groups, hasMore: page.hasMore };
    }, (g) => g.group);
  }

  async groupsPage(after: IdLike = 0n, limit = 100): Promise<{ groups: GroupInfo[]; hasMore: boolean }> {
    return this.call(Op.GROUPS, { after: toId(after), limit });
  }

  /** Every member (all pages), by id. */
  async groupMembers(group: IdLike): Promise<MemberInfo[]> {
    return this.all(async (after) => {
      const page = await this.groupMembersPage(group, after, MAX_LIST);
      return { items: page.members, hasMore: page.hasMore };
    }, (m) => m.user);
  }

  async groupMembersPage(group: IdLike, after: IdLike = 0n, limit = 100): Promise<{ group: bigint; members: MemberInfo[]; hasMore: boolean }> {
    return this.call(Op.GROUP_MEMBERS, { group: toId(group), after: toId(after), limit });
  }

  /** Add `users`: `users` in the reply were added, `invited` were sent an invitation instead. */
  async groupInvite(group: IdLike, users: IdLike[]): Promise<GroupUsersDone> {
    const done = await this.call<GroupUsersDone>(Op.GROUP_INVITE, { group: toId(group), users: users.map(toId) });
    done.invited ??= [];
    return done;
  }

  /** Every pending group invitation of this user (all pages), by group id. */
  async groupInvitations(): Promise<InvitationInfo[]> {
    return this.all(async (after) => {
      const page = await this.groupInvitationsPage(after, MAX_LIST);
      return { items: page.invitations, hasMore: page.hasMore };
    }, (i) => i.group);
  }

  /** Pending group invitations to groups with ids above `after`, ascending (one page). */
  async groupInvitationsPage(after: IdLike = 0n, limit = 100): Promise<{ invitations: InvitationInfo[]; hasMore: boolean }> {
    return this.call(Op.GROUP_INVITATIONS, { after: toId(after), limit });
  }

  /** Join `group` on its pending invitation; returns the group as it is now. */
  async groupInvitationAccept(group: IdLike): Promise<GroupInfo> {
    return this.call(Op.GROUP_INVITATION_ACCEPT, { group: toId(group) });
  }

  /** Drop a pending invitation (nobody is told). */
  async groupInvitationDecline(group: IdLike): Promise<void> {
    await this.done(Op.GROUP_INVITATION_DECLINE, { group: toId(group) });
  }

  /** Join an open group (status "joined") or ask to join one ("pending"). */
  async groupJoin(group: IdLike, message = ""): Promise<JoinResult> {
    return this.call(Op.GROUP_JOIN, { group: toId(group), message });
  }

  /** Every pending request to join (all pages), by user id. */
  async groupJoinRequests(group: IdLike): Promise<JoinRequestList> {
    const requests = await this.all(async (after) => {
      const page = await this.groupJoinRequestsPage(group, after, MAX_LIST);
      return { items: page.requests, hasMore: page.hasMore };
    }, (r) => r.user);
    return { group: toId(group), requests, hasMore: false };
  }

  /** Pending requests to join from user ids above `after`, ascending (one page). */
  async groupJoinRequestsPage(group: IdLike, after: IdLike = 0n, limit = 100): Promise<JoinRequestList> {
    const page = await this.call<JoinRequestList>(Op.GROUP_JOIN_REQUESTS, { group: toId(group), after: toId(after), limit });
    page.hasMore ??= false; // a server from before this list was paged
    return page;
  }

  async groupApprove(group: IdLike, user: IdLike, accept = true): Promise<void> {
    await this.done(Op.GROUP_APPROVE, { group: toId(group), user: toId(user), accept });
  }

  async groupQuit(group: IdLike): Promise<void> {
    await this.done(Op.GROUP_QUIT, { group: toId(group) });
  }

  async groupKick(group: IdLike, user: IdLike): Promise<void> {
    await this.done(Op.GROUP_KICK, { group: toId(group), user: toId(user) });
  }

  /** Make a member an admin, or an admin a member (owner only). */
  async groupSetRole(group: IdLike, user: IdLike, role: "admin" | "member"): Promise<void> {
    await this.done(Op.GROUP_SET_ROLE, { group: toId(group), user: toId(user), role });
  }

  /** Hand the group to `user`; the caller becomes an admin. */
  async groupTransfer(group: IdLike, user: IdLike): Promise<void> {
    await this.done(Op.GROUP_TRANSFER, { group: toId(group), user: toId(user) });
  }

  /** Mute `user` until `until` (Unix ms); 0 lifts the mute. */
  async groupMute(group: IdLike, user: IdLike, until: number): Promise<void> {
    await this.done(Op.GROUP_MUTE, { group: toId(group), user: toId(user), until });
  }

  async groupMuteAll(group: IdLike, muted = true): Promise<void> {
    await this.done(Op.GROUP_MUTE_ALL, { group: toId(group), muted });
  }

  // -- typing, presence, settings, calls ------------------------------------------------------

  /** Tell the other members of `conv` online that this user is (or stopped) typing. */
  async typing(conv: string, on = true): Promise<void> {
    await this.done(Op.TYPING, { conv, typing: on });
  }

  /** Whether these users are online, and on which terminals. */
  async presence(users: IdLike[]): Promise<UserPresence[]> {
    return (await this.call<{ users: UserPresence[] }>(Op.PRESENCE, { users: users.map(toId) })).users;
  }

  /** Watch these users' presence ("presence" events when it changes); returns it now. */
  async presenceSubscribe(users: IdLike[]): Promise<UserPresence[]> {
    return (await this.call<{ users: UserPresence[] }>(Op.PRESENCE_SUBSCRIBE, { users: users.map(toId) })).users;
  }

  async presenceUnsubscribe(users: IdLike[]): Promise<void> {
    await this.done(Op.PRESENCE_UNSUBSCRIBE, { users: users.map(toId) });
  }

  /** This user's settings, after changing what is given. `groupAdd`: who may add this user
   * to a group at once ("anyone", "friends", "nobody"); the others' adds become invitations. */
  async settings(opts: { invisible?: boolean; groupAdd?: GroupAdd } = {}): Promise<UserSettings> {
    return this.call(Op.SETTINGS, { invisible: opts.invisible, group_add: opts.groupAdd });
  }

  /** Ring every online device of `to` with this device's SDP offer ("call" events follow). */
  async callInvite(to: IdLike, kind: "audio" | "video", sdp: string): Promise<CallStarted> {
    return this.call(Op.CALL_INVITE, { to: toId(to), kind, sdp });
  }
  async callAccept(call: IdLike, sdp: string): Promise<void> {
    await this.done(Op.CALL_ACCEPT, { call: toId(call), sdp });
  }
  async callReject(call: IdLike): Promise<void> {
    await this.done(Op.CALL_REJECT, { call: toId(call) });
  }
  async callCancel(call: IdLike): Promise<void> {
    await this.done(Op.CALL_CANCEL, { call: toId(call) });
  }
  async callHangup(call: IdLike): Promise<void> {
    await this.done(Op.CALL_HANGUP, { call: toId(call) });
  }
  async callIce(call: IdLike, candidate: string): Promise<void> {
    await this.done(Op.CALL_ICE, { call: toId(call), candidate });
  }

  // -- files ----------------------------------------------------------------------------------

  /** FILE_UPLOAD: a signed URL to PUT one file of `size` bytes and type `mime` for `conv`. */
  async fileUploadGrant(conv: string, name: string, size: number, mime: string): Promise<FileUploadGrant> {
    return this.call(Op.FILE_UPLOAD, { name, size, mime, conv });
  }

  /** FILE_DOWNLOAD: a signed URL to GET the file `key`, with its name, size and type. */
  async fileDownloadGrant(key: string): Promise<FileDownloadGrant> {
    return this.call(Op.FILE_DOWNLOAD, { key });
  }

  /**
   * Upload `data` for `conv`: the grant, then the HTTP request it describes. Returns the
   * file's key, to share in a message (type 2..5). Rejects with ServerError when the grant is
   * refused, FileTransferError when the HTTP server refuses the upload.
   */
  async upload(conv: string, data: Blob | Uint8Array, mime: string, name = "file"): Promise<string> {
    const size = data instanceof Uint8Array ? data.byteLength : data.size;
    const grant = await this.fileUploadGrant(conv, name, size, mime);
    const headers: Record<string, string> = {};
    for (const h of grant.headers) {
      // fetch sets Content-Length from the body itself (browsers refuse to be told it)
      if (h.name.toLowerCase() !== "content-length") headers[h.name] = h.value;
    }
    const method = (grant as FileUploadGrant & { method?: string }).method ?? "PUT";
    const response = await this.http(grant.url, { method, headers, body: data as BodyInit });
    if (response.status < 200 || response.status > 299)
      throw new FileTransferError(response.status, (await response.text()).trim());
    return grant.key;
  }

  /** The bytes of the file `key`: the grant, then the HTTP GET. */
  async download(key: string): Promise<Uint8Array> {
    const grant = await this.fileDownloadGrant(key);
    const response = await this.http(grant.url, { method: "GET" });
    if (response.status !== 200) throw new FileTransferError(response.status, (await response.text()).trim());
    return new Uint8Array(await response.arrayBuffer());
  }

  private http(url: string, init: RequestInit): Promise<Response> {
    if (!this.fetchImpl) throw new TypeError("no fetch implementation: pass options.fetch");
    return this.fetchImpl(url, init);
  }
}
