/** The app's state and every action on it: one reactive object the components read, one
 * `Client` (edgeim-sdk) the actions drive, and the SDK's events folded into the state.
 *
 * A user's action runs through `act`, background work through `run`: both show a failure to
 * the user in words (errors.ts) instead of dropping it; an action that succeeds clears the
 * errors still shown. */
import { markRaw, reactive, watchEffect } from "vue";
import { Client, ServerError, type Page } from "edgeim-sdk";
import { webConfig } from "./config";
import { sentence, technical, codeOf } from "./errors";
import { preview } from "./format";
import {
  FILE, IMAGE, TEXT,
  type Content, type Conversation, type Friend, type FriendRequest, type Group, type GroupAdd, type Invitation,
  type Member, type Message, type Profile, type Reply,
} from "./types";

/** What a feature module adds to the store's life. The store calls it without importing the
 * module (messageActions.ts registers itself with `extend`), so that the module may import
 * the store and the two do not import each other. */
export interface StoreExtension {
  /** follow the new client's events (`live` drops those of a client gone since) */
  listen(client: Client, live: <T>(handle: (event: T) => void) => (event: T) => void): void;
  /** a HISTORY page of `conv` was merged */
  afterPage(conv: string, page: Page): void;
  /** back after a drop: read what changed meanwhile */
  catchUp(): Promise<void>;
  /** logged out: keep nothing of this user's */
  reset(): void;
}
const extensions: StoreExtension[] = [];

export function extend(extension: StoreExtension): void {
  extensions.push(extension);
}

function afterPage(conv: string, page: Page): void {
  for (const extension of extensions) extension.afterPage(conv, page);
}

const TOKEN_KEY = "edgeim.token";
/** this browser's own terminal name, so two browsers of one account stay signed in together */
const TERMINAL_KEY = "edgeim.terminal";
/** friend requests I sent that are not answered yet, per user: { user id: sent at (ms) } */
const SENT_KEY = "edgeim.sent.";
/** how long a sent friend request is shown as pending (a rejection is not pushed) */
const SENT_SHOWN_MS = 7 * 24 * 3600 * 1000;
/** messages per HISTORY page */
export const PAGE = 30;
/** how long a typing signal is shown without a new one (docs/protocol.md 9.20.2) */
const TYPING_SHOWN_MS = 5000;
/** how often an open group chat asks again who read my latest messages (not pushed in groups) */
const GROUP_READERS_EVERY_MS = 3000;
/** my latest messages whose readers an open chat shows */
const RECEIPTS_FOR = 5;
/** how long a notice stays up */
const INFO_SHOWN_MS = 5000;
const ERROR_SHOWN_MS = 9000;
/** search results per page */
const SEARCH_PAGE = 20;

export interface Notice {
  id: number;
  kind: "error" | "info";
  text: string;
  /** the failure as the server named it (tooltip), and its code (0: none) */
  detail: string;
  code: number;
  count: number;
}

export interface SearchState {
  query: string;
  busy: boolean;
  results: Message[];
  hasMore: boolean;
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
  /** the friends list has been loaded once this session (until then nobody is a stranger) */
  friendsLoaded: false,
  requests: [] as FriendRequest[],
  groups: {} as Record<string, Group>,
  members: {} as Record<string, Member[]>,
  blocked: {} as Record<string, boolean>,
  found: null as Profile | null,
  /** user id -> when I sent them a friend request still unanswered (this browser's record) */
  sent: {} as Record<string, number>,
  /** conv -> the read cursor when the chat was opened: the "unread" divider goes after it */
  unreadFrom: {} as Record<string, number>,
  /** "conv:seq" of a message to show (a search result): scrolled to and highlighted */
  highlight: "",
  search: null as SearchState | null,
  /** the open action menu ("conv:<id>", "msg:<conv>:<seq>"), "" for none */
  menu: "",
  notices: [] as Notice[],
  recallWindowMs: 120_000,
  editWindowMs: 48 * 3600 * 1000,
  /** the settings panel (profile, privacy, password, account) is open */
  settingsOpen: false,
  /** who may add me to a group at once ("" until loaded) */
  groupAdd: "" as GroupAdd | "",
  /** pending invitations into groups, and the groups' names as GROUP_INFO tells them */
  invitations: [] as Invitation[],
  invitedGroups: {} as Record<string, Group>,
  /** conv -> the message the composer replies to */
  replyTo: {} as Record<string, Message>,
  /** conv -> my message the composer edits */
  editing: {} as Record<string, Message>,
  /** an avatar's file key -> its download URL (granted on demand) */
  avatarUrls: {} as Record<string, string>,
  notifications: (typeof Notification === "undefined" ? "denied" : Notification.permission) as NotificationPermission,
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

/** A failure in people's words; `who`: the user the action was about. */
export function describe(error: unknown, who?: bigint): string {
  return sentence(error, who === undefined ? "" : displayName(who));
}

export function notify(kind: Notice["kind"], text: string, detail = "", code = 0): void {
  const same = state.notices.find((n) => n.text === text && n.kind === kind);
  if (same) {
    same.count += 1;
    return;
  }
  const id = ++noticeIds;
  state.notices.push({ id, kind, text, detail, code, count: 1 });
  if (state.notices.length > 4) state.notices.shift();
  setTimeout(() => dismiss(id), kind === "info" ? INFO_SHOWN_MS : ERROR_SHOWN_MS);
}

export function fail(error: unknown, who?: bigint): void {
  notify("error", describe(error, who), technical(error), codeOf(error));
}

export function dismiss(id: number): void {
  state.notices = state.notices.filter((n) => n.id !== id);
}

function clearErrors(): void {
  if (state.notices.some((n) => n.kind === "error")) state.notices = state.notices.filter((n) => n.kind !== "error");
}

/** Run background work; a failure becomes an error notice (never swallowed). Returns its
 * result, or undefined when it failed. */
export async function run<T>(action: () => Promise<T>, who?: bigint): Promise<T | undefined> {
  try {
    return await action();
  } catch (error) {
    fail(error, who);
    return undefined;
  }
}

/** Run a user's action as `act`, with its own words for some error codes. */
async function actWith<T>(action: () => Promise<T>, words: Record<number, string>): Promise<T | undefined> {
  try {
    const done = await action();
    clearErrors();
    return done;
  } catch (error) {
    const said = words[codeOf(error)];
    if (said) notify("error", said, technical(error), codeOf(error));
    else fail(error);
    return undefined;
  }
}

/** Run a user's action: as `run`, and once it succeeds the errors shown before are stale. */
export async function act<T>(action: () => Promise<T>, who?: bigint): Promise<T | undefined> {
  try {
    const done = await action();
    clearErrors();
    return done;
  } catch (error) {
    fail(error, who);
    return undefined;
  }
}

export function sdk(): Client {
  if (client === null) throw new Error("not connected");
  return client;
}

// -- names ---------------------------------------------------------------------------------

const key = (id: bigint): string => id.toString();

export function displayName(id: bigint): string {
  if (id === 0n) return "";
  const profile = state.profiles[key(id)];
  if (profile?.deleted) return "Deleted user";
  const friend = state.friends.find((f) => f.user === id);
  if (friend && friend.remark) return friend.remark;
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
    fail(error);
  } finally {
    batch.forEach((id) => pendingProfiles.delete(key(id)));
  }
}

/** Fetch these profiles again (known ones too), replacing what is held. */
async function refreshProfiles(ids: bigint[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 100) {
    for (const profile of await sdk().users(ids.slice(i, i + 100))) state.profiles[key(profile.user)] = { ...profile };
  }
}

/** Whether a user's account was deleted (their profile says so). */
export function isDeleted(id: bigint): boolean {
  return Boolean(state.profiles[key(id)]?.deleted);
}

/** A user's picture as a URL to show, "" for none (the initials are drawn instead). */
export function avatarOf(id: bigint): string {
  const profile = state.profiles[key(id)];
  return profile && !profile.deleted ? pictureUrl(profile.avatar) : "";
}

export function convAvatar(conv: Conversation): string {
  return conv.kind === "group" ? pictureUrl(state.groups[key(conv.group)]?.avatar ?? "") : avatarOf(conv.peer);
}

const pendingAvatars = new Set<string>();

/** An avatar as a URL: an https URL as it is, a file key of an avatar space through a
 * download grant (asked once, then shown when it comes). A grant refused is no picture:
 * the initials stay, as for a user without one. */
export function pictureUrl(avatar: string | undefined): string {
  if (!avatar) return "";
  if (/^https?:\/\//.test(avatar)) return avatar;
  const held = state.avatarUrls[avatar];
  if (held) return held;
  if (!pendingAvatars.has(avatar) && client !== null) {
    pendingAvatars.add(avatar);
    fileUrl(avatar).then(
      (grant) => {
        state.avatarUrls[avatar] = grant.url;
      },
      () => undefined, // decoration: the initials stand in
    ).finally(() => pendingAvatars.delete(avatar));
  }
  return "";
}

/** Open one action menu (closing any other), or close it when it is the one open. */
export function toggleMenu(name: string): void {
  state.menu = state.menu === name ? "" : name;
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

/** This browser's terminal name: "web-" and a random id kept in localStorage (the
 * protocol's 1-16 of [a-z0-9_-]). Every browser (profile) has its own, so two browsers of one
 * account stay signed in together; tabs of one browser share it: a newer login replaces. */
export function terminalName(): string {
  const held = localStorage.getItem(TERMINAL_KEY);
  if (held && /^web-[a-z0-9]{8}$/.test(held)) return held;
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const made = "web-" + Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
  localStorage.setItem(TERMINAL_KEY, made);
  return made;
}

async function openClient(): Promise<Client> {
  const config = await webConfig();
  state.recallWindowMs = config.recallWindowMs;
  state.editWindowMs = config.editWindowMs;
  // the edit window also bounds the SDK's catch-up of edits made while it was away
  const made = markRaw(new Client({ urls: config.url, terminal: terminalName() }));
  // events of a client already dropped (logged out, kicked) must not touch the new session
  const live =
    <T>(handle: (event: T) => void) =>
    (event: T): void => {
      if (client === made) handle(event);
    };
  made.on("message", live((m: Message) => onMessage(m)));
  made.on("recall", live((m: Message) => onRecall(m)));
  made.on("edit", live((m: Message) => onEdit(m)));
  made.on("profile", live((p: Profile) => onProfile(p)));
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
  made.on("error", live((error: unknown) => {
    if (error instanceof ServerError && SESSION_OVER.includes(error.code)) onSessionRefused(error);
    else fail(error);
  }));
  for (const extension of extensions) extension.listen(made, live); // reactions, message pins, deletions
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
    if (error instanceof ServerError && [2002, 2003, 2006, 2007].includes(error.code)) {
      localStorage.removeItem(TOKEN_KEY);
    }
    fail(error);
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
    fail(error);
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
  state.notices = []; // what went wrong before this login is no news to this session
  state.sent = loadSent();
  await Promise.all([
    run(loadConversations), run(loadFriends), run(loadGroups), run(loadInvitations), run(loadSettings),
    ensureProfiles([state.me]),
  ]);
}

export async function logout(): Promise<void> {
  localStorage.removeItem(TOKEN_KEY);
  if (client) await run(() => sdk().logout());
  await dropClient();
  reset();
  state.notices = [];
  state.phase = "auth";
}

function reset(): void {
  Object.assign(state, {
    me: 0n, tab: "chats", convs: [], current: "", showMembers: false, messages: {}, hasOlder: {},
    loadingOlder: {}, presence: {}, typing: {}, peerRead: {}, readers: {}, friends: [], requests: [],
    groups: {}, members: {}, blocked: {}, found: null, connected: true, sent: {}, unreadFrom: {}, highlight: "",
    search: null, menu: "", friendsLoaded: false, settingsOpen: false, groupAdd: "", invitations: [],
    invitedGroups: {}, replyTo: {}, editing: {}, avatarUrls: {},
  });
  document.title = BASE_TITLE;
  presenceWatched.clear();
  grants.clear();
  typingSentAt.clear();
  for (const extension of extensions) extension.reset();
}

/** Why a session was closed, in people's words (KICKED's reasons, docs/protocol.md). */
const KICKED_WORDS: Record<string, string> = {
  replaced: "Signed out: this account signed in again in another tab of this browser.",
  disabled: "Signed out: an operator disabled this account.",
  password_changed: "Signed out: this account's password was changed on another device. Log in with the new password.",
  account_deleted: "Signed out: this account was deleted.",
};

/** TOKEN_LOGIN refusals that end the session for good (expired, revoked or issued before a
 * password change, the account disabled or deleted): the SDK stops reconnecting. */
const SESSION_OVER = [2002, 2003, 2006, 2007];

/** The stored token was refused on a reconnect (say, the password was changed or the
 * account deleted while this browser was offline): back to the login screen, saying why. */
function onSessionRefused(error: ServerError): void {
  localStorage.removeItem(TOKEN_KEY);
  void dropClient();
  reset();
  state.notices = [];
  const words = error.code === 2003
    ? "Signed out: this session is no longer valid (the password may have been changed on another device). Log in again."
    : `Signed out: ${describe(error)}`;
  notify("error", words, technical(error), error.code);
  state.phase = "auth";
}

function onKicked(reason: string): void {
  // "replaced": this browser's login went to a newer session of the same terminal; the token
  // stays good for a reload. Anything else (an operator, a password change, a deletion) ends it.
  if (reason !== "replaced") localStorage.removeItem(TOKEN_KEY);
  void dropClient();
  reset();
  state.notices = [];
  notify("error", KICKED_WORDS[reason] ?? "Signed out by an operator.");
  state.phase = "auth";
}

// -- my account ----------------------------------------------------------------------------

const PROFILE_WORDS: Record<number, string> = {
  1003: "That can't be saved: a picture's address must be an https:// link (no spaces or quotes).",
  3002: "That can't be saved: a nickname needs a letter or more (not only spaces), and both nickname and bio have a length limit.",
  3006: "That picture is not on the server. Upload it again.",
  3011: "Only images can be avatars.",
  4000: "You changed your profile many times in a short while. Try again later.",
};

/** Change my profile (what is given); true when the server took it. */
export async function saveProfile(change: { nickname?: string; bio?: string; avatar?: string }): Promise<boolean> {
  const profile = await actWith(() => sdk().profileSet(change), PROFILE_WORDS);
  if (!profile) return false;
  state.profiles[key(profile.user)] = { ...profile };
  return true;
}

/** Upload an image into my avatar space and make it my avatar. */
export async function uploadAvatar(file: File): Promise<boolean> {
  const mime = (file.type || "application/octet-stream").toLowerCase();
  const profile = await actWith(() => sdk().uploadAvatar(file, mime, file.name || "avatar"), PROFILE_WORDS);
  if (!profile) return false;
  state.profiles[key(profile.user)] = { ...profile };
  return true;
}

async function loadSettings(): Promise<void> {
  state.groupAdd = (await sdk().settings()).groupAdd;
}

export async function setGroupAdd(groupAdd: GroupAdd): Promise<void> {
  const settings = await act(() => sdk().settings({ groupAdd }));
  if (settings) state.groupAdd = settings.groupAdd;
}

/** Change my password: this session stays (with the fresh token), the others are closed. */
export async function changePassword(oldPassword: string, newPassword: string): Promise<boolean> {
  const changed = await actWith(() => sdk().passwordChange(oldPassword, newPassword), {
    2001: "The current password is wrong. Nothing was changed.",
    1003: "The new password must be 6 to 128 characters.",
    4000: "Too many password attempts. Wait a while and try again.",
  });
  if (!changed) return false;
  localStorage.setItem(TOKEN_KEY, changed.token);
  const others = changed.closed === 0 ? "No other device was signed in."
    : changed.closed === 1 ? "1 other session was signed out: it needs the new password."
    : `${changed.closed} other sessions were signed out: they need the new password.`;
  notify("info", `Password changed. ${others}`);
  return true;
}

/** Delete my account for good, then back to the login screen. */
export async function deleteAccount(password: string): Promise<void> {
  const done = await actWith(async () => {
    await sdk().accountDelete(password);
    return true;
  }, {
    2001: "The password is wrong. The account was not deleted.",
    4000: "Too many password attempts. Wait a while and try again.",
  });
  if (!done) return;
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(SENT_KEY + state.me);
  await dropClient();
  reset();
  state.notices = [];
  notify("info", "Your account was deleted.");
  state.phase = "auth";
}

function onProfile(p: Profile): void {
  state.profiles[key(p.user)] = { ...p };
  // a deleted account is nobody's friend any more (FRIEND_PUSH tells friends; this is for the rest)
  if (p.deleted && isFriend(p.user)) void run(loadFriends);
}

async function onReconnected(): Promise<void> {
  state.connected = true;
  presenceWatched.clear(); // watches belong to a connection: the new one watches afresh
  if (client?.token) localStorage.setItem(TOKEN_KEY, client.token);
  await Promise.all([run(loadConversations), run(loadFriends), run(loadGroups), run(loadInvitations)]);
  // names and pictures may have changed while away (PROFILE_PUSH is not caught up)
  void run(() => refreshProfiles(Object.values(state.profiles).map((p) => p.user)));
  if (state.current) void run(() => refreshReceipts(state.current));
  await run(async () => {
    for (const extension of extensions) await extension.catchUp();
  });
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
  state.highlight = "";
  const c = findConv(conv);
  if (!c) return;
  // the divider marks where the user left off, for as long as the chat stays open
  if (c.lastSeq > c.readSeq && c.lastFrom !== state.me) state.unreadFrom[conv] = c.readSeq;
  else delete state.unreadFrom[conv];
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
  afterPage(conv, page);
  state.hasOlder[conv] = page.hasMore;
}

export async function loadOlder(conv: string): Promise<void> {
  const held = state.messages[conv];
  if (!held || held.length === 0 || state.loadingOlder[conv] || !state.hasOlder[conv]) return;
  state.loadingOlder[conv] = true;
  try {
    const page = await sdk().history(conv, held[0].seq, PAGE);
    merge(conv, page.msgs);
    afterPage(conv, page);
    state.hasOlder[conv] = page.hasMore;
  } finally {
    state.loadingOlder[conv] = false;
  }
}

/** Add messages to a loaded conversation: one per seq (a later copy, e.g. a tombstone,
 * replaces the earlier), ascending by seq. */
export function merge(conv: string, msgs: Message[]): void {
  const bySeq = new Map<number, Message>();
  for (const m of state.messages[conv] ?? []) bySeq.set(m.seq, m);
  for (const m of msgs) bySeq.set(m.seq, { ...m });
  state.messages[conv] = [...bySeq.values()].sort((a, b) => a.seq - b.seq);
  void ensureProfiles(msgs.map((m) => m.from));
}

export function bump(conv: Conversation, m: Message): void {
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
    void run(loadConversations).then(() => {
      const added = findConv(m.conv);
      if (added && m.from !== state.me && !added.muted) desktopNotify(added, m);
    });
    return;
  }
  bump(conv, m);
  if (m.from !== state.me && !conv.muted) desktopNotify(conv, m);
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

/** An edit of a message (mine from another device, or someone's): the held copy is
 * replaced, and the list's preview follows when it is the newest. */
function onEdit(m: Message): void {
  if (state.messages[m.conv]) merge(m.conv, [m]);
  const conv = findConv(m.conv);
  if (conv && conv.lastSeq === m.seq && !m.recalledBy) {
    conv.lastText = m.type === TEXT && typeof m.content === "string" ? m.content.slice(0, 64) : conv.lastText;
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
  const s = await act(() => sdk().convSet(conv.conv, { pinned: !conv.pinned }));
  if (s) {
    conv.pinned = s.pinned;
    conv.muted = s.muted;
  }
}

export async function toggleMute(conv: Conversation): Promise<void> {
  const s = await act(() => sdk().convSet(conv.conv, { muted: !conv.muted }));
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

/** Follow a friend's presence (PRESENCE_SUB answers 3003 NOT_FRIENDS for anyone else). */
async function watchPresence(user: bigint): Promise<void> {
  if (presenceWatched.has(key(user)) || user === 0n || !isFriend(user)) return;
  presenceWatched.add(key(user));
  const list = await run(() => sdk().presenceSubscribe([user]));
  if (!list) {
    presenceWatched.delete(key(user));
    return;
  }
  for (const p of list) state.presence[key(p.user)] = p.online;
}

/** most friends whose presence the list shows (a session may watch 1000 users) */
const WATCH_FRIENDS = 900;

/** Follow every friend's presence, so the list's online dots are live. Quietly: a dot is a
 * nicety, and one friend who blocked me refuses a whole batch (3004), so a refused batch is
 * asked again one friend at a time (a few dozen at most: the presence rate budget). */
async function watchFriends(): Promise<void> {
  const wanted = state.friends.map((f) => f.user).filter((u) => !presenceWatched.has(key(u))).slice(0, WATCH_FRIENDS);
  for (let i = 0; i < wanted.length; i += 500) {
    const batch = wanted.slice(i, i + 500);
    batch.forEach((u) => presenceWatched.add(key(u)));
    try {
      for (const p of await sdk().presenceSubscribe(batch)) state.presence[key(p.user)] = p.online;
    } catch {
      batch.forEach((u) => presenceWatched.delete(key(u)));
      for (const u of batch.slice(0, 30)) {
        presenceWatched.add(key(u));
        try {
          for (const p of await sdk().presenceSubscribe([u])) state.presence[key(p.user)] = p.online;
        } catch {
          presenceWatched.delete(key(u));
        }
      }
    }
  }
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

/** What a reply to `m` quotes, as the server would say it (docs/protocol.md 9.23). */
export function quoteOf(m: Message): Reply {
  const recalled = Boolean(m.recalledBy);
  const body = typeof m.content === "object" && m.content !== null ? (m.content as Record<string, unknown>) : {};
  const snippet = recalled ? "" : m.type === TEXT ? String(m.content).slice(0, 100) : m.type === FILE ? String(body.name ?? "") : "";
  return { id: m.id, seq: m.seq, from: m.from, type: m.type, snippet, recalled };
}

async function sendContent(conv: Conversation, content: Content, type: number, text = "", replyTo?: Message): Promise<void> {
  const c = sdk();
  const reply = replyTo ? { replyTo: replyTo.id } : {};
  const ack =
    conv.kind === "group"
      ? await c.sendGroup(conv.group, content, { type, ...reply, ...mentionsIn(conv, text) })
      : await c.send(conv.peer, content, { type, ...reply });
  const m: Message = {
    id: ack.msgId, conv: ack.conv, seq: ack.seq, from: state.me, to: conv.kind === "group" ? conv.group : conv.peer,
    cmid: ack.cmid, type, content, ts: ack.ts, mentions: [], mentionAll: false, recalledBy: 0n, recalledAt: 0, tooLarge: false,
    reply: replyTo ? quoteOf(replyTo) : null, editedAt: 0, rev: 0,
  };
  if (!findConv(ack.conv)) await loadConversations();
  const target = findConv(ack.conv);
  if (target) bump(target, m);
  if (state.messages[ack.conv]) merge(ack.conv, [m]);
  else state.messages[ack.conv] = [m];
}

/** Send a text (a reply when the composer quotes a message, an edit when it edits one);
 * true when the server acknowledged it (stored). */
export async function sendText(conv: Conversation, text: string): Promise<boolean> {
  if (!text.trim()) return false;
  const editing = state.editing[conv.conv];
  if (editing) return editMessage(editing, text);
  const replyTo = state.replyTo[conv.conv];
  const sent = await act(async () => {
    await sendContent(conv, text, TEXT, text, replyTo);
    return true;
  }, conv.kind === "private" ? conv.peer : undefined);
  if (sent && state.replyTo[conv.conv] === replyTo) delete state.replyTo[conv.conv];
  if (sent && typingSentAt.has(conv.conv)) {
    typingSentAt.delete(conv.conv);
    sdk().typing(conv.conv, false).catch(() => undefined);
  }
  return Boolean(sent);
}

export async function sendFile(conv: Conversation, file: File): Promise<void> {
  const replyTo = state.replyTo[conv.conv];
  await act(async () => {
    const mime = (file.type || "application/octet-stream").toLowerCase();
    const size = await imageSize(file);
    const fileKey: string = await sdk().upload(conv.conv, file, mime, file.name);
    if (size) {
      await sendContent(conv, { key: fileKey, width: size.width, height: size.height, size: file.size, mime }, IMAGE, "", replyTo);
    } else {
      await sendContent(conv, { key: fileKey, name: file.name, size: file.size, mime }, FILE, "", replyTo);
    }
    if (replyTo && state.replyTo[conv.conv] === replyTo) delete state.replyTo[conv.conv];
  }, conv.kind === "private" ? conv.peer : undefined);
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
  // a signal, not a message: a refused one (a chat with a stranger) is nothing to tell
  sdk().typing(conv, true).catch(() => undefined);
}

/** Whether Recall is offered for a message: my own within the node's recall window, or
 * anyone's but the owner's for a group's owner and admins (any time), as the server rules. */
export function mayRecall(conv: Conversation, m: Message): boolean {
  if (m.recalledBy) return false;
  if (m.from === state.me && state.now - m.ts < state.recallWindowMs) return true;
  if (conv.kind !== "group") return false;
  const role = myRole(conv.group);
  if (role === "owner") return true;
  return role === "admin" && m.from !== state.me && state.groups[key(conv.group)]?.owner !== m.from;
}

/** Whether Edit is offered: my own text message, not recalled, within the node's edit window. */
export function mayEdit(m: Message): boolean {
  return m.from === state.me && m.type === TEXT && !m.recalledBy && !m.tooLarge && state.now - m.ts < state.editWindowMs;
}

/** Reply to a message: the composer quotes it (an edit under way is dropped). */
export function startReply(m: Message): void {
  delete state.editing[m.conv];
  state.replyTo[m.conv] = m;
}

/** Edit my message: the composer takes its text (a reply under way is dropped). */
export function startEdit(m: Message): void {
  delete state.replyTo[m.conv];
  state.editing[m.conv] = m;
}

export function cancelCompose(conv: string): void {
  delete state.replyTo[conv];
  delete state.editing[conv];
}

/** Replace the text of my message; true when the server took it (unchanged text: nothing to do). */
export async function editMessage(m: Message, text: string): Promise<boolean> {
  if (text === m.content) {
    if (state.editing[m.conv] === m) delete state.editing[m.conv];
    return true;
  }
  const edited = await act(() => sdk().edit(m.conv, m.seq, text));
  if (!edited) return false;
  if (state.editing[m.conv] === m) delete state.editing[m.conv];
  onEdit(edited);
  return true;
}

/** Show the message a reply quotes: scroll to it (paging back until it is loaded). */
export async function showQuoted(conv: string, seq: number): Promise<void> {
  for (let pages = 0; pages < 50 && state.current === conv; pages++) {
    if ((state.messages[conv] ?? []).some((held) => held.seq === seq)) break;
    if (!state.hasOlder[conv]) break;
    await run(() => loadOlder(conv));
  }
  if ((state.messages[conv] ?? []).some((held) => held.seq === seq)) {
    state.highlight = "";
    await Promise.resolve();
    state.highlight = `${conv}:${seq}`;
  } else {
    notify("info", "That message is no longer in this conversation.");
  }
}

export async function recall(conv: string, seq: number): Promise<void> {
  const tombstone = await act(() => sdk().recall(conv, seq));
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
  state.friendsLoaded = true;
  state.requests = requests.map((r: FriendRequest) => ({ ...r }));
  state.blocked = Object.fromEntries(blocks.map((u) => [key(u), true]));
  // a request answered by becoming friends is pending no more
  for (const f of state.friends) forgetSent(f.user);
  // a former friend's presence is not pushed any more: no stale dot
  for (const id of [...presenceWatched]) {
    if (!isFriend(BigInt(id))) {
      presenceWatched.delete(id);
      delete state.presence[id];
    }
  }
  void watchFriends();
  void ensureProfiles([...state.friends.map((f) => f.user), ...state.requests.map((r) => r.user)]);
}

export function isFriend(user: bigint): boolean {
  return state.friends.some((f) => f.user === user);
}

/** Whether I asked this user to be friends and they have not answered (as far as I know). */
export function requestPending(user: bigint): boolean {
  const at = state.sent[key(user)];
  return at !== undefined && at + SENT_SHOWN_MS > state.now && !isFriend(user);
}

function loadSent(): Record<string, number> {
  try {
    const held: unknown = JSON.parse(localStorage.getItem(SENT_KEY + state.me) ?? "{}");
    if (typeof held === "object" && held !== null) return held as Record<string, number>;
  } catch {
    // a damaged record: start a new one
  }
  return {};
}

function saveSent(): void {
  if (state.me !== 0n) localStorage.setItem(SENT_KEY + state.me, JSON.stringify(state.sent));
}

function forgetSent(user: bigint): void {
  if (state.sent[key(user)] === undefined) return;
  delete state.sent[key(user)];
  saveSent();
}

export async function findUser(username: string): Promise<void> {
  state.found = null;
  const wanted = username.trim();
  if (!wanted) return;
  let profile: Profile | undefined;
  try {
    profile = await sdk().userFind(wanted);
    clearErrors();
  } catch (error) {
    if (codeOf(error) === 3000) notify("error", `No one is called “${wanted}” here. Check the spelling.`, technical(error), 3000);
    else fail(error);
    return;
  }
  state.found = { ...profile };
  state.profiles[key(profile.user)] = { ...profile };
}

export async function requestFriend(user: bigint, message: string): Promise<void> {
  if (requestPending(user)) return;
  const done = await act(async () => {
    await sdk().friendRequest(user, message);
    return true;
  }, user);
  if (!done) return;
  state.sent[key(user)] = Date.now();
  saveSent();
  notify("info", `Friend request sent to ${displayName(user)}`);
  // a request to someone who had asked me makes us friends at once
  await run(loadFriends);
}

export async function answerRequest(user: bigint, accept: boolean): Promise<void> {
  await act(async () => {
    if (accept) await sdk().friendAccept(user);
    else await sdk().friendReject(user);
    await loadFriends();
  }, user);
}

export async function removeFriend(user: bigint): Promise<void> {
  await act(async () => {
    await sdk().friendDelete(user);
    await loadFriends();
  }, user);
}

export async function setBlocked(user: bigint, blocked: boolean): Promise<void> {
  await act(async () => {
    if (blocked) await sdk().block(user);
    else await sdk().unblock(user);
    state.blocked[key(user)] = blocked;
    notify("info", `${displayName(user)} ${blocked ? "blocked" : "unblocked"}`);
  }, user);
}

async function onFriend(e: { event: string; user: bigint; message: string }): Promise<void> {
  await ensureProfiles([e.user]);
  if (e.event === "request") notify("info", `${displayName(e.user)} sent you a friend request`);
  else if (e.event === "accepted") notify("info", `${displayName(e.user)} accepted your friend request`);
  if (e.event === "accepted") forgetSent(e.user);
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

/** Names, "A, B and C". */
function names(users: bigint[]): string {
  const list = users.map(displayName);
  return list.length <= 1 ? list.join("") : `${list.slice(0, -1).join(", ")} and ${list[list.length - 1]}`;
}

/** Tell who an add made members and who got an invitation instead (their group setting). */
function tellAdded(group: string, added: bigint[], invited: bigint[]): void {
  const parts: string[] = [];
  if (added.length) parts.push(`${names(added)} ${added.length === 1 ? "was" : "were"} added to ${group}.`);
  if (invited.length) {
    parts.push(`${names(invited)} ${invited.length === 1 ? "was" : "were"} invited: they join once they accept.`);
  }
  if (parts.length) notify("info", parts.join(" "));
}

export async function createGroup(name: string, members: bigint[]): Promise<boolean> {
  const done = await act(async () => {
    const info = await sdk().groupCreate(name, members);
    const { added, invited, ...group } = info;
    state.groups[key(info.group)] = { ...group };
    await ensureProfiles([...added, ...invited]);
    tellAdded(name, added, invited);
    await loadConversations();
    state.tab = "chats";
    await openConv(`g${info.group}`);
    return true;
  });
  return Boolean(done);
}

/** Add users to a group (those whose setting asks for it get an invitation instead). */
export async function inviteToGroup(group: bigint, users: bigint[]): Promise<boolean> {
  const done = await act(async () => {
    const result = await sdk().groupInvite(group, users);
    await ensureProfiles([...result.users, ...result.invited]);
    tellAdded(state.groups[key(group)]?.name ?? "the group", result.users, result.invited);
    await Promise.all([loadMembers(group), loadGroups()]);
    return true;
  }, users.length === 1 ? users[0] : undefined);
  return Boolean(done);
}

export async function loadInvitations(): Promise<void> {
  const list: Invitation[] = await sdk().groupInvitations();
  state.invitations = list.map((i) => ({ ...i }));
  void ensureProfiles(list.map((i) => i.inviter));
  for (const i of list) {
    if (state.invitedGroups[key(i.group)]) continue;
    const info = await run(() => sdk().groupInfo(i.group));
    if (info) state.invitedGroups[key(i.group)] = { ...info };
  }
}

export function invitedGroupName(group: bigint): string {
  return state.invitedGroups[key(group)]?.name || `group ${group}`;
}

export async function answerInvitation(group: bigint, accept: boolean): Promise<void> {
  const name = invitedGroupName(group);
  const done = await act(async () => {
    if (accept) await sdk().groupInvitationAccept(group);
    else await sdk().groupInvitationDecline(group);
    return true;
  });
  if (!done) {
    await run(loadInvitations); // gone meanwhile (expired, dissolved): the list says so
    return;
  }
  state.invitations = state.invitations.filter((i) => i.group !== group);
  if (accept) {
    await Promise.all([run(loadGroups), run(loadConversations)]);
    notify("info", `You joined ${name}`);
  }
}

/** Run a group admin action, then show the group as it is now. */
export async function groupAction(group: bigint, action: (c: Client) => Promise<unknown>, who?: bigint): Promise<void> {
  await act(async () => {
    await action(sdk());
    await Promise.all([loadMembers(group), loadGroups()]);
  }, who);
}

export async function leaveGroup(group: bigint, dissolve: boolean): Promise<void> {
  const done = await act(async () => {
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
  if (e.event === "invited") {
    await ensureProfiles([e.actor]);
    await run(loadInvitations);
    notify("info", `${displayName(e.actor)} invited you to ${invitedGroupName(e.group)}`);
    return;
  }
  if (e.event === "dissolved" && state.invitations.some((i) => i.group === e.group)) {
    state.invitations = state.invitations.filter((i) => i.group !== e.group);
    if (!state.groups[key(e.group)]) return;
  }
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

// -- search --------------------------------------------------------------------------------

/** Search my conversations (SEARCH): the newest matches first; `more` asks for the next page. */
export async function search(query: string, more = false): Promise<void> {
  const wanted = query.trim();
  if (!wanted) {
    state.search = null;
    return;
  }
  const held = more && state.search?.query === wanted ? state.search : null;
  const s: SearchState = held ?? { query: wanted, busy: false, results: [], hasMore: false };
  state.search = s;
  s.busy = true;
  const before = held && held.results.length ? held.results[held.results.length - 1].id : 0n;
  const page = await act(() => sdk().search(wanted, { before, limit: SEARCH_PAGE }));
  if (state.search?.query !== wanted) return; // another search replaced this one
  const live = state.search;
  live.busy = false;
  if (!page) return;
  live.results = [...live.results, ...page.msgs.map((m) => ({ ...m }))];
  live.hasMore = page.hasMore;
  void ensureProfiles(page.msgs.map((m) => m.from));
}

/** Open a search result: its conversation, paged back until the message is loaded, which
 * the chat then scrolls to and highlights. */
export async function openMessage(m: Message): Promise<void> {
  if (!findConv(m.conv)) await run(loadConversations);
  await openConv(m.conv);
  for (let pages = 0; pages < 50 && state.current === m.conv; pages++) {
    if ((state.messages[m.conv] ?? []).some((held) => held.seq === m.seq)) break;
    if (!state.hasOlder[m.conv]) break;
    await run(() => loadOlder(m.conv));
  }
  state.highlight = `${m.conv}:${m.seq}`;
}

// -- notifications and the title -------------------------------------------------------------

const BASE_TITLE = "edgeim";

/** Ask for desktop notifications; browsers allow the question on a user's gesture only. */
export async function enableNotifications(): Promise<void> {
  if (typeof Notification === "undefined") return;
  state.notifications = await Notification.requestPermission();
}

/** A desktop notification for a message that came while the tab is hidden. */
function desktopNotify(conv: Conversation, m: Message): void {
  if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
  if (document.visibilityState === "visible") return;
  const who = displayName(m.from);
  const title = conv.kind === "group" ? convTitle(conv) : who;
  const text = preview(m.type, typeof m.content === "string" ? m.content : "", Boolean(m.recalledBy));
  try {
    const shown = new Notification(title, { body: conv.kind === "group" ? `${who}: ${text}` : text, tag: conv.conv });
    shown.onclick = () => {
      window.focus();
      state.tab = "chats";
      void openConv(conv.conv);
      shown.close();
    };
  } catch {
    // a browser that only notifies from a service worker (Android Chrome): the title still counts
  }
}

/** Unread messages of conversations that are not muted: shown in the tab's title. */
export function unreadTotal(): number {
  return state.convs.reduce((sum, c) => sum + (c.muted ? 0 : c.unread), 0);
}

// -- clocks --------------------------------------------------------------------------------

setInterval(() => {
  state.now = Date.now();
}, 1000);

setInterval(() => {
  const c = state.current ? findConv(state.current) : undefined;
  if (client && c?.kind === "group" && document.visibilityState === "visible") void run(() => refreshReceipts(c.conv));
}, GROUP_READERS_EVERY_MS);

// a click anywhere else closes an open action menu (its own button stops the click)
document.addEventListener("click", () => {
  state.menu = "";
});

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") state.menu = "";
});

document.addEventListener("visibilitychange", () => {
  if (state.current) void markRead(state.current);
});

watchEffect(() => {
  const count = state.phase === "ready" ? unreadTotal() : 0;
  document.title = count > 0 ? `(${count}) ${BASE_TITLE}` : BASE_TITLE;
});
