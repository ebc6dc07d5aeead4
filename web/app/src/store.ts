/** The app's state and every action on it: one reactive object the components read, one
 * `Client` (edgeim-sdk) the actions drive, and the SDK's events folded into the state.
 *
 * Every action runs through `run`, which shows a failure to the user (a `ServerError` by
 * its code and name) instead of dropping it. */
import { markRaw, reactive } from "vue";
import { Client, ServerError } from "edgeim-sdk";
import { webSocketUrl } from "./config";
import {
  FILE, IMAGE, TEXT,
  type Content, type Conversation, type Friend, type FriendRequest, type Group, type Member,
  type Message, type Profile,
} from "./types";

const TOKEN_KEY = "edgeim.token";
/** messages per HISTORY page */
export const PAGE = 30;
/** how long a typing signal is shown without a new one (docs/protocol.md 9.20.2) */
const TYPING_SHOWN_MS = 5000;
/** how often an open group chat asks again who read my latest messages (not pushed in groups) */
const GROUP_READERS_EVERY_MS = 3000;
/** my latest messages whose readers an open chat shows */
const RECEIPTS_FOR = 5;
/** how long an informational notice stays up */
const INFO_SHOWN_MS = 6000;

export interface Notice {
  id: number;
  kind: "error" | "info";
  text: string;
  count: number;
}

export const state = reactive({
  phase: "starting" as "starting" | "auth" | "ready",
  busy: false,
  connected: true,
  me: 0n as bigint,
  tab: "chats" as "chats" | "contacts",
  convs: [] as Conversation[],
  current: "",
  showMembers: false,
  messages: {} as Record<string, Message[]>,
  hasOlder: {} as Record<string, boolean>,
  loadingOlder: {} as Record<string, boolean>,
  profiles: {} as Record<string, Profile>,
  presence: {} as Record<string, boolean>,
  typing: {} as Record<string, { user: bigint; until: number }>,
  /** private conversation -> the peer's read cursor, as far as this app knows */
  peerRead: {} as Record<string, number>,
  /** "conv:seq" -> how many have read it (group conversations) */
  readers: {} as Record<string, number>,
  friends: [] as Friend[],
  requests: [] as FriendRequest[],
  groups: {} as Record<string, Group>,
  members: {} as Record<string, Member[]>,
  blocked: {} as Record<string, boolean>,
  found: null as Profile | null,
  notices: [] as Notice[],
  now: Date.now(),
});

let client: Client | null = null;
let noticeIds = 0;
const pendingProfiles = new Set<string>();
const presenceWatched = new Set<string>();
const grants = new Map<string, { url: string; name: string; expiresAt: number }>();
/** conv -> when I last told it I am typing */
const typingSentAt = new Map<string, number>();

// -- failures and notices -----------------------------------------------------------------

export function describe(error: unknown): string {
  if (error instanceof ServerError) return `${error.name} (${error.code}): ${error.message}`;
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

export function notify(kind: Notice["kind"], text: string): void {
  const same = state.notices.find((n) => n.text === text && n.kind === kind);
  if (same) {
    same.count += 1;
    return;
  }
  const id = ++noticeIds;
  state.notices.push({ id, kind, text, count: 1 });
  if (state.notices.length > 5) state.notices.shift();
  // news fades by itself; an error stays until the user dismisses it
  if (kind === "info") setTimeout(() => dismiss(id), INFO_SHOWN_MS);
}

export function dismiss(id: number): void {
  state.notices = state.notices.filter((n) => n.id !== id);
}

/** Run an action; a failure becomes an error notice (never swallowed). Returns its result,
 * or undefined when it failed. */
export async function run<T>(action: () => Promise<T>): Promise<T | undefined> {
  try {
    return await action();
  } catch (error) {
    notify("error", describe(error));
    return undefined;
  }
}

function sdk(): Client {
  if (client === null) throw new Error("not connected");
  return client;
}

// -- names ---------------------------------------------------------------------------------

const key = (id: bigint): string => id.toString();

export function displayName(id: bigint): string {
  if (id === 0n) return "";
  const friend = state.friends.find((f) => f.user === id);
  if (friend && friend.remark) return friend.remark;
  const profile = state.profiles[key(id)];
  if (profile) return profile.nickname || profile.username;
  void ensureProfiles([id]);
  return `user ${id}`;
}

/** Fetch the profiles not known yet, batched (USERS takes up to 100 ids). */
export async function ensureProfiles(ids: bigint[]): Promise<void> {
  const missing = ids.filter((id) => id !== 0n && !state.profiles[key(id)] && !pendingProfiles.has(key(id)));
  if (missing.length === 0 || client === null) return;
  missing.forEach((id) => pendingProfiles.add(key(id)));
  await Promise.resolve(); // let the callers of this tick join the batch
  const batch = [...new Set(missing.map(key))].map((id) => BigInt(id));
  try {
    for (let i = 0; i < batch.length; i += 100) {
      const found: Profile[] = await sdk().users(batch.slice(i, i + 100));
      for (const profile of found) state.profiles[key(profile.user)] = { ...profile };
    }
  } catch (error) {
    notify("error", describe(error));
  } finally {
    batch.forEach((id) => pendingProfiles.delete(key(id)));
  }
}

export function convTitle(conv: Conversation): string {
  if (conv.kind === "group") return state.groups[key(conv.group)]?.name || conv.name || `group ${conv.group}`;
  return displayName(conv.peer);
}

export function privateConvId(a: bigint, b: bigint): string {
  return a < b ? `p${a}_${b}` : `p${b}_${a}`;
}

export function findConv(conv: string): Conversation | undefined {
  return state.convs.find((c) => c.conv === conv);
}

// -- session -------------------------------------------------------------------------------

async function openClient(): Promise<Client> {
  const url = await webSocketUrl();
  const made = markRaw(new Client({ urls: url, terminal: "web" }));
  // events of a client already dropped (logged out, kicked) must not touch the new session
  const live =
    <T>(handle: (event: T) => void) =>
    (event: T): void => {
      if (client === made) handle(event);
    };
  made.on("message", live((m: Message) => onMessage(m)));
  made.on("recall", live((m: Message) => onRecall(m)));
  made.on("read", live((mark: { conv: string; user: bigint; seq: number }) => onRead(mark)));
  made.on("conv", live((s: { conv: string; pinned: boolean; muted: boolean; hidden: boolean }) => onConvState(s)));
  made.on("friend", live((e: { event: string; user: bigint; message: string }) => void onFriend(e)));
  made.on("group", live((e: { event: string; group: bigint; actor: bigint; users: bigint[] }) => void onGroup(e)));
  made.on("typing", live((e: { conv: string; user: bigint; typing: boolean }) => onTyping(e)));
  made.on("presence", live((p: { user: bigint; online: boolean }) => {
    state.presence[key(p.user)] = p.online;
  }));
  made.on("kicked", live((k: { reason: string }) => onKicked(k.reason)));
  made.on("disconnected", live(() => {
    state.connected = false;
  }));
  made.on("reconnected", live(() => void onReconnected()));
  made.on("connected", live(() => {
    state.connected = true;
  }));
  made.on("error", live((error: unknown) => notify("error", describe(error))));
  await made.connect();
  return made;
}

async function dropClient(): Promise<void> {
  const old = client;
  client = null;
  if (old) {
    try {
      await old.close();
    } catch {
      // closing a connection that is already gone: nothing left to release
    }
  }
}

/** On page load: log in with the stored token, if any. */
export async function start(): Promise<void> {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    state.phase = "auth";
    return;
  }
  state.busy = true;
  try {
    client = await openClient();
    await client.tokenLogin(token);
    await afterLogin();
  } catch (error) {
    if (error instanceof ServerError && (error.code === 2002 || error.code === 2003 || error.code === 2006)) {
      localStorage.removeItem(TOKEN_KEY);
    }
    notify("error", describe(error));
    await dropClient();
    state.phase = "auth";
  } finally {
    state.busy = false;
  }
}

export async function register(username: string, password: string, nickname: string): Promise<void> {
  await authenticate(async (c) => {
    await c.register(username, password, nickname);
    await c.login(username, password);
  });
}

export async function login(username: string, password: string): Promise<void> {
  await authenticate((c) => c.login(username, password));
}

async function authenticate(steps: (c: Client) => Promise<unknown>): Promise<void> {
  state.busy = true;
  try {
    // a connection left unauthenticated too long is closed by the server (auth timeout)
    if (client === null || !client.connected) {
      await dropClient();
      client = await openClient();
    }
    await steps(client);
    await afterLogin();
  } catch (error) {
    notify("error", describe(error));
  } finally {
    state.busy = false;
  }
}

async function afterLogin(): Promise<void> {
  const c = sdk();
  state.me = c.userId ?? 0n;
  if (c.token) localStorage.setItem(TOKEN_KEY, c.token);
  state.phase = "ready";
  state.connected = true;
  await Promise.all([run(loadConversations), run(loadFriends), run(loadGroups), ensureProfiles([state.me])]);
}

export async function logout(): Promise<void> {
  localStorage.removeItem(TOKEN_KEY);
  if (client) await run(() => sdk().logout());
  await dropClient();
  reset();
  state.phase = "auth";
}

function reset(): void {
  Object.assign(state, {
    me: 0n, tab: "chats", convs: [], current: "", showMembers: false, messages: {}, hasOlder: {},
    loadingOlder: {}, presence: {}, typing: {}, peerRead: {}, readers: {}, friends: [], requests: [],
    groups: {}, members: {}, blocked: {}, found: null, connected: true,
  });
  presenceWatched.clear();
  grants.clear();
  typingSentAt.clear();
}

function onKicked(reason: string): void {
  // "replaced": this browser's login went to a newer session of the same terminal; the token
  // stays good for a reload. An operator's kick or disable ends it.
  if (reason !== "replaced") localStorage.removeItem(TOKEN_KEY);
  notify("error", `Signed out: ${reason === "replaced" ? "this account signed in elsewhere on the web" : reason}`);
  void dropClient();
  reset();
  state.phase = "auth";
}

async function onReconnected(): Promise<void> {
  state.connected = true;
  if (client?.token) localStorage.setItem(TOKEN_KEY, client.token);
  await Promise.all([run(loadConversations), run(loadFriends), run(loadGroups)]);
  if (state.current) void run(() => refreshReceipts(state.current));
}

// -- conversations -------------------------------------------------------------------------

export async function loadConversations(): Promise<void> {
  const list: Conversation[] = await sdk().conversations();
  const fresh = list.map((c) => ({ ...c }));
  // keep chats opened here that have no message yet (not in the server's list until one)
  const local = state.convs.filter((c) => c.lastSeq === 0 && c.kind === "private" && !fresh.some((f) => f.conv === c.conv));
  state.convs = [...fresh, ...local];
  void ensureProfiles(fresh.flatMap((c) => [c.peer, c.lastFrom]));
}

export function sortedConvs(): Conversation[] {
  return [...state.convs].sort((a, b) =>
    Number(b.pinned) - Number(a.pinned) || b.lastTs - a.lastTs || a.conv.localeCompare(b.conv));
}

export async function openConv(conv: string): Promise<void> {
  state.current = conv;
  state.showMembers = false;
  const c = findConv(conv);
  if (!c) return;
  if (c.kind === "private") void watchPresence(c.peer);
  if (c.kind === "group") void run(() => loadMembers(c.group));
  if (!state.messages[conv]) await run(() => loadLatest(conv));
  await run(() => refreshReceipts(conv));
  await markRead(conv);
}

export function closeConv(): void {
  state.current = "";
  state.showMembers = false;
}

async function loadLatest(conv: string): Promise<void> {
  const page = await sdk().history(conv, 0, PAGE);
  merge(conv, page.msgs);
  state.hasOlder[conv] = page.hasMore;
}

export async function loadOlder(conv: string): Promise<void> {
  const held = state.messages[conv];
  if (!held || held.length === 0 || state.loadingOlder[conv] || !state.hasOlder[conv]) return;
  state.loadingOlder[conv] = true;
  try {
    const page = await sdk().history(conv, held[0].seq, PAGE);
    merge(conv, page.msgs);
    state.hasOlder[conv] = page.hasMore;
  } finally {
    state.loadingOlder[conv] = false;
  }
}

/** Add messages to a loaded conversation: one per seq (a later copy, e.g. a tombstone,
 * replaces the earlier), ascending by seq. */
function merge(conv: string, msgs: Message[]): void {
  const bySeq = new Map<number, Message>();
  for (const m of state.messages[conv] ?? []) bySeq.set(m.seq, m);
  for (const m of msgs) bySeq.set(m.seq, { ...m });
  state.messages[conv] = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  void ensureProfiles(msgs.map((m) => m.from));
}

function bump(conv: Conversation, m: Message): void {
  if (m.seq > conv.lastSeq) {
    if (m.from !== state.me) conv.unread += m.seq - conv.lastSeq;
    conv.lastSeq = m.seq;
    conv.lastTs = m.ts;
    conv.lastFrom = m.from;
    conv.lastType = m.type;
    conv.lastText = m.type === TEXT && typeof m.content === "string" ? m.content.slice(0, 64) : "";
    conv.lastRecalled = Boolean(m.recalledBy);
  }
  if (m.from === state.me) {
    conv.readSeq = Math.max(conv.readSeq, m.seq);
    conv.unread = Math.max(0, conv.lastSeq - conv.readSeq);
  } else if (m.mentionAll || m.mentions?.includes(state.me)) {
    if (m.seq > conv.readSeq) conv.mentioned = true;
  }
}

function onMessage(m: Message): void {
  const conv = findConv(m.conv);
  if (!conv) {
    // a conversation new to this list (a first private message, a group just joined)
    void run(loadConversations);
    return;
  }
  bump(conv, m);
  // the open chat keeps it even while its first page is still loading (merge orders them)
  if (state.messages[m.conv] || state.current === m.conv) merge(m.conv, [m]);
  if (state.typing[m.conv]?.user === m.from) delete state.typing[m.conv];
  if (state.current === m.conv) {
    void markRead(m.conv);
    if (conv.kind === "group") void run(() => refreshReceipts(m.conv));
  }
}

function onRecall(m: Message): void {
  if (state.messages[m.conv]) merge(m.conv, [m]);
  const conv = findConv(m.conv);
  if (conv && conv.lastSeq === m.seq) {
    conv.lastRecalled = true;
    conv.lastText = "";
  }
}

function onRead(mark: { conv: string; user: bigint; seq: number }): void {
  if (mark.user === state.me) {
    const conv = findConv(mark.conv);
    if (conv) {
      conv.readSeq = Math.max(conv.readSeq, mark.seq);
      conv.unread = Math.max(0, conv.lastSeq - conv.readSeq);
      conv.mentioned = false;
    }
  } else {
    state.peerRead[mark.conv] = Math.max(state.peerRead[mark.conv] ?? 0, mark.seq);
  }
}

function onConvState(s: { conv: string; pinned: boolean; muted: boolean; hidden: boolean }): void {
  const conv = findConv(s.conv);
  if (!conv) return;
  if (s.hidden) {
    state.convs = state.convs.filter((c) => c.conv !== s.conv);
    return;
  }
  conv.pinned = s.pinned;
  conv.muted = s.muted;
}

function onTyping(e: { conv: string; user: bigint; typing: boolean }): void {
  if (e.user === state.me) return;
  if (e.typing) state.typing[e.conv] = { user: e.user, until: Date.now() + TYPING_SHOWN_MS };
  else if (state.typing[e.conv]?.user === e.user) delete state.typing[e.conv];
}

export function typingIn(conv: string): bigint | null {
  const t = state.typing[conv];
  return t && t.until > state.now ? t.user : null;
}

/** Move my read cursor to the newest message of an open, visible conversation. */
export async function markRead(conv: string): Promise<void> {
  const c = findConv(conv);
  if (!c || state.current !== conv || document.visibilityState !== "visible") return;
  const held = state.messages[conv];
  const newest = Math.max(c.lastSeq, held?.length ? held[held.length - 1].seq : 0);
  if (newest <= c.readSeq && !c.mentioned) return;
  const mark = await run(() => sdk().read(conv, newest));
  if (mark) {
    c.readSeq = Math.max(c.readSeq, mark.seq);
    c.unread = Math.max(0, c.lastSeq - c.readSeq);
    c.mentioned = false;
  }
}

export async function togglePin(conv: Conversation): Promise<void> {
  const s = await run(() => sdk().convSet(conv.conv, { pinned: !conv.pinned }));
  if (s) {
    conv.pinned = s.pinned;
    conv.muted = s.muted;
  }
}

export async function toggleMute(conv: Conversation): Promise<void> {
  const s = await run(() => sdk().convSet(conv.conv, { muted: !conv.muted }));
  if (s) {
    conv.pinned = s.pinned;
    conv.muted = s.muted;
  }
}

// -- receipts and presence -----------------------------------------------------------------

function mine(conv: string): Message[] {
  return (state.messages[conv] ?? []).filter((m) => m.from === state.me && !m.recalledBy).slice(-RECEIPTS_FOR);
}

/** Ask who read my latest messages: private, whether the peer's cursor is past my newest
 * (later moves are pushed); group, each one's reader count (group reads are not pushed). */
export async function refreshReceipts(conv: string): Promise<void> {
  const c = findConv(conv);
  const latest = mine(conv);
  if (!c || latest.length === 0) return;
  if (c.kind === "private") {
    const newest = latest[latest.length - 1];
    if ((state.peerRead[conv] ?? 0) >= newest.seq) return;
    for (const m of [...latest].reverse()) {
      const page = await sdk().readers(conv, m.seq);
      if (page.count > 0) {
        state.peerRead[conv] = Math.max(state.peerRead[conv] ?? 0, m.seq);
        return;
      }
    }
    return;
  }
  for (const m of latest) {
    const page = await sdk().readers(conv, m.seq);
    state.readers[`${conv}:${m.seq}`] = page.count;
  }
}

async function watchPresence(user: bigint): Promise<void> {
  if (presenceWatched.has(key(user)) || user === 0n) return;
  presenceWatched.add(key(user));
  const list = await run(() => sdk().presenceSubscribe([user]));
  if (!list) {
    presenceWatched.delete(key(user));
    return;
  }
  for (const p of list) state.presence[key(p.user)] = p.online;
}

// -- sending -------------------------------------------------------------------------------

function mentionsIn(conv: Conversation, text: string): { mentions: bigint[]; mentionAll: boolean } {
  const mentions: bigint[] = [];
  let mentionAll = false;
  for (const [, word] of text.matchAll(/@([A-Za-z0-9_.-]+)/g)) {
    if (word === "all") {
      mentionAll = true;
      continue;
    }
    const member = (state.members[key(conv.group)] ?? []).find((m) => state.profiles[key(m.user)]?.username === word);
    if (member && !mentions.includes(member.user)) mentions.push(member.user);
  }
  return { mentions, mentionAll };
}

async function sendContent(conv: Conversation, content: Content, type: number, text = ""): Promise<void> {
  const c = sdk();
  const ack =
    conv.kind === "group"
      ? await c.sendGroup(conv.group, content, { type, ...mentionsIn(conv, text) })
      : await c.send(conv.peer, content, { type });
  const m: Message = {
    id: ack.msgId, conv: ack.conv, seq: ack.seq, from: state.me, to: conv.kind === "group" ? conv.group : conv.peer,
    cmid: ack.cmid, type, content, ts: ack.ts, mentions: [], mentionAll: false, recalledBy: 0n, recalledAt: 0, tooLarge: false,
  };
  if (!findConv(ack.conv)) await loadConversations();
  const target = findConv(ack.conv);
  if (target) bump(target, m);
  if (state.messages[ack.conv]) merge(ack.conv, [m]);
  else state.messages[ack.conv] = [m];
}

/** Send a text; true when the server acknowledged it (stored). */
export async function sendText(conv: Conversation, text: string): Promise<boolean> {
  if (!text.trim()) return false;
  const sent = await run(async () => {
    await sendContent(conv, text, TEXT, text);
    return true;
  });
  if (sent && typingSentAt.has(conv.conv)) {
    typingSentAt.delete(conv.conv);
    void run(() => sdk().typing(conv.conv, false));
  }
  return Boolean(sent);
}

export async function sendFile(conv: Conversation, file: File): Promise<void> {
  await run(async () => {
    const mime = (file.type || "application/octet-stream").toLowerCase();
    const size = await imageSize(file);
    const fileKey: string = await sdk().upload(conv.conv, file, mime, file.name);
    if (size) {
      await sendContent(conv, { key: fileKey, width: size.width, height: size.height, size: file.size, mime }, IMAGE);
    } else {
      await sendContent(conv, { key: fileKey, name: file.name, size: file.size, mime }, FILE);
    }
  });
}

async function imageSize(file: File): Promise<{ width: number; height: number } | null> {
  if (!file.type.startsWith("image/")) return null;
  try {
    const bitmap = await createImageBitmap(file);
    const size = { width: Math.min(bitmap.width, 65535), height: Math.min(bitmap.height, 65535) };
    bitmap.close();
    return size.width > 0 && size.height > 0 ? size : null;
  } catch {
    return null; // not decodable here: shared as a plain file
  }
}

/** Tell the peer(s) I am typing, at most every 3 s. */
export function typed(conv: string): void {
  const now = Date.now();
  if (now - (typingSentAt.get(conv) ?? 0) < 3000) return;
  typingSentAt.set(conv, now);
  void run(() => sdk().typing(conv, true));
}

export async function recall(conv: string, seq: number): Promise<void> {
  const tombstone = await run(() => sdk().recall(conv, seq));
  if (tombstone) onRecall(tombstone);
}

/** A download URL for a shared file, granted on demand and reused until it expires. */
export async function fileUrl(fileKey: string): Promise<{ url: string; name: string }> {
  const held = grants.get(fileKey);
  if (held && held.expiresAt * 1000 > Date.now() + 30_000) return held;
  const grant = await sdk().fileDownloadGrant(fileKey);
  const fresh = { url: grant.url, name: grant.name, expiresAt: grant.expiresAt };
  grants.set(fileKey, fresh);
  return fresh;
}

// -- friends -------------------------------------------------------------------------------

export async function loadFriends(): Promise<void> {
  const c = sdk();
  const [friends, requests, blocks] = await Promise.all([c.friends(), c.friendRequests(), c.blocks()]);
  state.friends = friends.map((f: Friend) => ({ ...f }));
  state.requests = requests.map((r: FriendRequest) => ({ ...r }));
  state.blocked = Object.fromEntries(blocks.map((u) => [key(u), true]));
  void ensureProfiles([...state.friends.map((f) => f.user), ...state.requests.map((r) => r.user)]);
}

export async function findUser(username: string): Promise<void> {
  state.found = null;
  const profile = await run(() => sdk().userFind(username.trim()));
  if (profile) {
    state.found = { ...profile };
    state.profiles[key(profile.user)] = { ...profile };
  }
}

export async function requestFriend(user: bigint, message: string): Promise<void> {
  const done = await run(async () => {
    await sdk().friendRequest(user, message);
    return true;
  });
  if (done) notify("info", `Friend request sent to ${displayName(user)}`);
}

export async function answerRequest(user: bigint, accept: boolean): Promise<void> {
  await run(async () => {
    if (accept) await sdk().friendAccept(user);
    else await sdk().friendReject(user);
    await loadFriends();
  });
}

export async function removeFriend(user: bigint): Promise<void> {
  await run(async () => {
    await sdk().friendDelete(user);
    await loadFriends();
  });
}

export async function setBlocked(user: bigint, blocked: boolean): Promise<void> {
  await run(async () => {
    if (blocked) await sdk().block(user);
    else await sdk().unblock(user);
    state.blocked[key(user)] = blocked;
    notify("info", `${displayName(user)} ${blocked ? "blocked" : "unblocked"}`);
  });
}

async function onFriend(e: { event: string; user: bigint; message: string }): Promise<void> {
  await ensureProfiles([e.user]);
  if (e.event === "request") notify("info", `${displayName(e.user)} sent you a friend request`);
  else if (e.event === "accepted") notify("info", `${displayName(e.user)} accepted your friend request`);
  await run(loadFriends);
}

/** Open (or start) the private chat with a user. */
export async function chatWith(user: bigint): Promise<void> {
  const conv = privateConvId(state.me, user);
  if (!findConv(conv)) {
    state.convs.push({
      conv, kind: "private", peer: user, group: 0n, name: "", lastSeq: 0, lastTs: Date.now(), lastFrom: 0n,
      lastType: 0, lastText: "", unread: 0, readSeq: 0, pinned: false, muted: false, mentioned: false,
      lastRecalled: false,
    });
  }
  state.tab = "chats";
  await openConv(conv);
}

// -- groups --------------------------------------------------------------------------------

export async function loadGroups(): Promise<void> {
  const list: Group[] = await sdk().groups();
  const groups: Record<string, Group> = {};
  for (const g of list) groups[key(g.group)] = { ...g };
  state.groups = groups;
}

export async function loadMembers(group: bigint): Promise<void> {
  const members: Member[] = await sdk().groupMembers(group);
  state.members[key(group)] = members.map((m) => ({ ...m }));
  await ensureProfiles(members.map((m) => m.user));
}

export function myRole(group: bigint): string {
  return state.members[key(group)]?.find((m) => m.user === state.me)?.role ?? state.groups[key(group)]?.role ?? "";
}

export async function createGroup(name: string, members: bigint[]): Promise<void> {
  await run(async () => {
    const info: Group = await sdk().groupCreate(name, members);
    state.groups[key(info.group)] = { ...info };
    await loadConversations();
    state.tab = "chats";
    await openConv(`g${info.group}`);
  });
}

/** Run a group admin action, then show the group as it is now. */
export async function groupAction(group: bigint, action: (c: Client) => Promise<unknown>): Promise<void> {
  await run(async () => {
    await action(sdk());
    await Promise.all([loadMembers(group), loadGroups()]);
  });
}

export async function leaveGroup(group: bigint, dissolve: boolean): Promise<void> {
  const done = await run(async () => {
    if (dissolve) await sdk().groupDissolve(group);
    else await sdk().groupQuit(group);
    return true;
  });
  if (done) forgetGroup(group);
}

function forgetGroup(group: bigint): void {
  const conv = `g${group}`;
  state.convs = state.convs.filter((c) => c.conv !== conv);
  delete state.messages[conv];
  delete state.groups[key(group)];
  delete state.members[key(group)];
  if (state.current === conv) closeConv();
}

async function onGroup(e: { event: string; group: bigint; actor: bigint; users: bigint[] }): Promise<void> {
  const gone = e.event === "dissolved" || ((e.event === "kicked" || e.event === "left") && e.users.includes(state.me));
  if (gone) {
    const name = state.groups[key(e.group)]?.name ?? `group ${e.group}`;
    forgetGroup(e.group);
    if (e.actor !== state.me) notify("info", e.event === "dissolved" ? `${name} was dissolved` : `You were removed from ${name}`);
    return;
  }
  await run(loadGroups);
  if ((e.event === "created" || e.event === "joined") && e.users.includes(state.me)) await run(loadConversations);
  if (state.members[key(e.group)]) await run(() => loadMembers(e.group));
}

// -- clocks --------------------------------------------------------------------------------

setInterval(() => {
  state.now = Date.now();
}, 1000);

setInterval(() => {
  const c = state.current ? findConv(state.current) : undefined;
  if (client && c?.kind === "group" && document.visibilityState === "visible") void run(() => refreshReceipts(c.conv));
}, GROUP_READERS_EVERY_MS);

document.addEventListener("visibilitychange", () => {
  if (state.current) void markRead(state.current);
});
