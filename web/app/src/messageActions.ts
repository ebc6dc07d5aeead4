/** What a user does to messages beyond sending them (docs/protocol.md 9.25-9.28): emoji
 * reactions, forwarding, deleting for oneself, clearing a history, and message pins. Their
 * state, their actions and the SDK events ("reaction", "pin", "view") that change them.
 *
 * store.ts owns the session and the messages; this module keeps what hangs on them and
 * is wired in at four places there (the client's events, each history page, a reconnect,
 * a logout). Actions run through store.ts's `act`, so a refusal is told in words. */
import { nextTick, reactive } from "vue";
import type { Changes, Client, Page, PinEvent, PinInfo, Reaction, ReactionEvent, ViewEvent } from "edgeim-sdk";
import {
  act, bump, convTitle, displayName, extend, findConv, loadConversations, loadOlder, merge, myRole, notify, run, sdk,
  sortedConvs, state,
} from "./store";
import { TEXT, type Conversation, type Message } from "./types";

/** the reactions one click away in a message's menu, as in the phone apps; the emoji
 * picker beside them has the rest */
export const QUICK_REACTIONS = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
/** a call record: the server does not forward it (3026 NOT_FORWARDABLE) */
const CALL = 8;
/** how far back the pin bar pages to show a pinned message */
const SHOW_PAGES = 50;

export type Dialog =
  | { kind: "forward"; conv: string; seqs: number[] }
  | { kind: "confirm"; title: string; text: string; action: string; confirm: () => Promise<void> }
  | { kind: "pins"; conv: string };

/** A conversation a message can be forwarded to: a friend (private) or a group. */
export interface ForwardTarget {
  key: string;
  kind: "private" | "group";
  /** the friend's user id, or the group's id */
  id: bigint;
  title: string;
}

export const extras = reactive({
  /** "conv:seq" -> the message's reactions, in the order each emoji first came (absent: none) */
  reactions: {} as Record<string, Reaction[]>,
  /** "conv:seq:emoji" -> whether I reacted so, as this session learnt it (a Reaction names
   * its first 10 users only) */
  mine: {} as Record<string, boolean>,
  /** conv -> its message pins, newest pin first (absent: not read yet) */
  pins: {} as Record<string, PinInfo[]>,
  /** the open dialog (forward, confirm, the pins list), null for none */
  dialog: null as Dialog | null,
});

/** "conv:seq" -> the conversation revision of the reactions held (a late push is older) */
const reactionRevs = new Map<string, number>();
/** conv -> the highest reaction revision seen: what a reconnect asks changes after */
const convRevs = new Map<string, number>();
/** conv -> the list entry's view_ver when its messages were read: another one on a
 * reconnect means messages were deleted on another device meanwhile */
const viewVers = new Map<string, number>();

const msgKey = (conv: string, seq: number): string => `${conv}:${seq}`;

/** Follow the client's events (store.ts's `live` drops those of a client gone since). */
export function listen(client: Client, live: <T>(handle: (event: T) => void) => (event: T) => void): void {
  client.on("reaction", live((e: ReactionEvent) => onReaction(e)));
  client.on("pin", live((e: PinEvent) => onPin(e)));
  client.on("view", live((e: ViewEvent) => void applyView(e)));
  client.on("changes", live((c: Changes) => applyChanges(c)));
}

/** What changed in place while the client was away (the SDK's catch-up after a reconnect):
 * edits and recalls replace the messages held, reactions follow. */
function applyChanges(c: Changes): void {
  if (state.messages[c.conv]) merge(c.conv, c.changed);
  for (const r of c.reactions) setReactions(c.conv, r.seq, r.reactions, r.rev);
  convRevs.set(c.conv, Math.max(convRevs.get(c.conv) ?? 0, c.rev));
  const entry = findConv(c.conv);
  for (const m of c.changed) {
    if (entry && entry.lastSeq === m.seq && !m.recalledBy && m.type === TEXT && typeof m.content === "string") {
      entry.lastText = m.content.slice(0, 64);
    }
  }
}

/** A HISTORY page of `conv` was merged: keep its reactions and the view it was read in. */
export function afterPage(conv: string, page: Page): void {
  for (const r of page.reactions ?? []) setReactions(conv, r.seq, r.reactions, r.rev);
  const c = findConv(conv);
  if (c && !viewVers.has(conv)) viewVers.set(conv, c.viewVer ?? 0);
}

/** Logged out: nothing of this user's stays. */
export function resetExtras(): void {
  Object.assign(extras, { reactions: {}, mine: {}, pins: {}, dialog: null });
  reactionRevs.clear();
  convRevs.clear();
  viewVers.clear();
}

/** Back after a drop (pushes are at most once): the conversation list is fresh; read what
 * changed in the conversations held meanwhile: clears, deletions, reactions, pins. */
export async function catchUp(): Promise<void> {
  for (const conv of Object.keys(state.messages)) {
    const c = findConv(conv);
    const held = state.messages[conv];
    if (!c || !held) continue;
    dropCleared(conv, c.clearedSeq ?? 0);
    const now = state.messages[conv];
    if (now.length === 0) continue;
    if (viewVers.has(conv) && (c.viewVer ?? 0) !== viewVers.get(conv)) await reread(conv, now[0].seq);
    const changes = await sdk().changes(conv, now[now.length - 1].seq, convRevs.get(conv) ?? 0);
    merge(conv, changes.changed); // recalled meanwhile: tombstones
    for (const r of changes.reactions) setReactions(conv, r.seq, r.reactions, r.rev);
    convRevs.set(conv, Math.max(convRevs.get(conv) ?? 0, changes.rev));
    viewVers.set(conv, c.viewVer ?? 0);
  }
  for (const conv of Object.keys(extras.pins)) {
    if (conv === state.current) await loadPins(conv);
    else delete extras.pins[conv]; // read again when the chat opens
  }
}

/** Read again, newest first, the pages down to `lowest` (their stubs say what is hidden). */
async function reread(conv: string, lowest: number): Promise<void> {
  let before = 0;
  for (let pages = 0; pages < 20; pages++) {
    const page = await sdk().history(conv, before, 100);
    merge(conv, page.msgs);
    afterPage(conv, page);
    if (!page.hasMore || page.msgs.length === 0 || page.msgs[0].seq <= lowest) return;
    before = page.msgs[0].seq;
  }
}

// -- reactions -----------------------------------------------------------------------------

function setReactions(conv: string, seq: number, reactions: Reaction[], rev: number): void {
  const k = msgKey(conv, seq);
  if (rev < (reactionRevs.get(k) ?? 0)) return; // a change older than the one shown
  reactionRevs.set(k, rev);
  convRevs.set(conv, Math.max(convRevs.get(conv) ?? 0, rev));
  if (reactions.length > 0) extras.reactions[k] = reactions.map((r) => ({ ...r, users: [...r.users] }));
  else delete extras.reactions[k];
}

function onReaction(e: ReactionEvent): void {
  setReactions(e.conv, e.seq, e.reactions, e.rev);
  if (e.user === state.me) setMine(e.conv, e.seq, e.emoji, e.added);
}

function setMine(conv: string, seq: number, emoji: string, on: boolean): void {
  const k = `${msgKey(conv, seq)}:${emoji}`;
  if (on) extras.mine[k] = true;
  else delete extras.mine[k];
}

export function reactionsOf(m: Message): Reaction[] {
  return m.recalledBy || m.hidden ? [] : extras.reactions[msgKey(m.conv, m.seq)] ?? [];
}

export function reactedByMe(m: Message, r: Reaction): boolean {
  return Boolean(extras.mine[`${msgKey(m.conv, m.seq)}:${r.emoji}`]) || r.users.includes(state.me);
}

/** Who reacted, for a chip's tooltip: "Alice, Bob and 3 others". */
export function reactorNames(r: Reaction): string {
  const names = r.users.map((u) => (u === state.me ? "You" : displayName(u)));
  const others = r.count - names.length;
  return others > 0 ? `${names.join(", ")} and ${others} other${others === 1 ? "" : "s"}` : names.join(", ");
}

export function mayReact(m: Message): boolean {
  return !m.recalledBy && !m.hidden;
}

/** Add my reaction `emoji`, or take it back when I have it on the message. */
export async function toggleReaction(m: Message, emoji: string): Promise<void> {
  const had = reactionsOf(m).some((r) => r.emoji === emoji && reactedByMe(m, r));
  const e = await act(() => (had ? sdk().unreact(m.conv, m.seq, emoji) : sdk().react(m.conv, m.seq, emoji)));
  if (!e) return;
  setReactions(e.conv, e.seq, e.reactions, e.rev);
  setMine(e.conv, e.seq, emoji, !had);
}

// -- forwarding ----------------------------------------------------------------------------

export function mayForward(m: Message): boolean {
  return !m.recalledBy && !m.hidden && !m.tooLarge && m.type !== CALL;
}

/** "Forwarded from Alice", or "Forwarded" when the forwarder hid the name; "" for an
 * original. */
export function forwardedLabel(m: Message): string {
  const from = m.forwardedFrom ?? 0n;
  if (from === 0n || m.recalledBy) return "";
  return from < 0n ? "Forwarded" : `Forwarded from ${displayName(from)}`;
}

export function askForward(m: Message): void {
  state.menu = "";
  extras.dialog = { kind: "forward", conv: m.conv, seqs: [m.seq] };
}

/** Where a message can go: the conversations in the list's order (friends' chats and
 * groups), then the friends not chatted with yet. A group where only its owner and
 * admins may write is left out for a plain member. */
export function forwardTargets(): ForwardTarget[] {
  const out: ForwardTarget[] = [];
  const seen = new Set<string>();
  const add = (kind: ForwardTarget["kind"], id: bigint, title: string): void => {
    const key = kind === "group" ? `g${id}` : `u${id}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ key, kind, id, title });
  };
  const friends = new Set(state.friends.map((f) => f.user.toString()));
  const writable = (group: bigint): boolean => {
    const g = state.groups[group.toString()];
    return Boolean(g && g.role !== "" && (!g.muteAll || g.role === "owner" || g.role === "admin"));
  };
  for (const c of sortedConvs()) {
    if (c.kind === "group" && writable(c.group)) add("group", c.group, convTitle(c));
    else if (c.kind === "private" && friends.has(c.peer.toString())) add("private", c.peer, convTitle(c));
  }
  for (const f of state.friends) add("private", f.user, displayName(f.user));
  for (const g of Object.values(state.groups)) if (writable(g.group)) add("group", g.group, g.name || `group ${g.group}`);
  return out;
}

/** Forward messages `seqs` of `conv` to a friend or a group; true once every copy is stored. */
export async function forward(conv: string, seqs: number[], target: ForwardTarget, hideSender: boolean): Promise<boolean> {
  const acks = await act(() => sdk().forward(target.id, conv, seqs, { group: target.kind === "group", hideSender }),
    target.kind === "private" ? target.id : undefined);
  if (!acks || acks.length === 0) return false;
  const into = acks[0].conv;
  if (!findConv(into)) await run(loadConversations);
  const chat = findConv(into);
  // the copies as the server stored them: the forwarding device gets no push of its own copies
  const held = state.messages[conv] ?? [];
  acks.forEach((ack, i) => {
    const original = held.find((m) => m.seq === seqs[i]);
    if (!original) return;
    const copy: Message = {
      id: ack.msgId, conv: ack.conv, seq: ack.seq, from: state.me, to: target.id, cmid: ack.cmid,
      type: original.type, content: original.content, ts: ack.ts, mentions: [], mentionAll: false,
      recalledBy: 0n, recalledAt: 0, tooLarge: false,
      forwardedFrom: hideSender ? -1n : original.forwardedFrom || original.from,
    };
    if (chat) bump(chat, copy);
    if (state.messages[into]) merge(into, [copy]);
  });
  notify("info", `Forwarded to ${target.title}`);
  return true;
}

// -- deleting for me, clearing a history -----------------------------------------------------

function confirm(title: string, text: string, action: string, then: () => Promise<void>): void {
  state.menu = "";
  extras.dialog = { kind: "confirm", title, text, action, confirm: then };
}

export function askDeleteForMe(m: Message): void {
  confirm("Delete this message for you?",
    "It goes from this chat on all your devices. The others in the chat still see it.",
    "Delete for me", () => deleteForMe(m.conv, [m.seq]));
}

export function askClearHistory(conv: Conversation): void {
  confirm(`Clear the history of ${convTitle(conv)}?`,
    "Every message so far goes from this chat on all your devices. The others in the chat keep theirs; new messages show as usual.",
    "Clear history", () => clearHistory(conv.conv));
}

export async function deleteForMe(conv: string, seqs: number[]): Promise<void> {
  const e = await act(() => sdk().deleteForMe(conv, seqs));
  if (e) await applyView(e);
}

export async function clearHistory(conv: string): Promise<void> {
  const e = await act(() => sdk().clearHistory(conv));
  if (e) await applyView(e);
}

/** A deletion or a clear, made here (the reply) or on another device (the "view" event). */
async function applyView(e: ViewEvent): Promise<void> {
  const held = state.messages[e.conv];
  if (e.event === "deleted" && held) {
    for (const m of held) if (e.seqs.includes(m.seq)) m.hidden = true;
  }
  dropCleared(e.conv, e.clearedSeq);
  const c = findConv(e.conv);
  if (c) c.clearedSeq = e.clearedSeq;
  viewVers.set(e.conv, e.viewVer);
  // the list's last message and unread count leave out what is hidden now
  await run(loadConversations);
}

function dropCleared(conv: string, clearedSeq: number): void {
  const held = state.messages[conv];
  if (!held || clearedSeq <= 0 || held.every((m) => m.seq > clearedSeq)) return;
  state.messages[conv] = held.filter((m) => m.seq > clearedSeq);
  if (state.messages[conv].length === 0) state.hasOlder[conv] = false;
}

// -- message pins ----------------------------------------------------------------------------

export async function loadPins(conv: string): Promise<void> {
  const list = await sdk().pins(conv);
  extras.pins[conv] = list.pins.map((p) => ({ ...p }));
}

/** Pin and unpin are the owner's and admins' in a group, either user's in a private chat. */
export function mayPin(conv: Conversation, m?: Message): boolean {
  if (m && (m.recalledBy || m.hidden)) return false;
  if (conv.kind === "private") return true;
  const role = myRole(conv.group);
  return role === "owner" || role === "admin";
}

/** The pins shown: newest first, each with the message as held here (a recall or a
 * deletion for me since takes it out of the bar). */
export function pinsOf(conv: string): { pin: PinInfo; message: Message }[] {
  const held = state.messages[conv] ?? [];
  const out: { pin: PinInfo; message: Message }[] = [];
  for (const pin of extras.pins[conv] ?? []) {
    const message = held.find((m) => m.seq === pin.seq) ?? pin.message;
    if (!message.recalledBy && !message.hidden) out.push({ pin, message });
  }
  return out;
}

export function isPinned(m: Message): boolean {
  return (extras.pins[m.conv] ?? []).some((p) => p.seq === m.seq);
}

export async function pinMessage(m: Message): Promise<void> {
  state.menu = "";
  const pin = await act(() => sdk().pinMessage(m.conv, m.seq));
  if (pin) addPin({ ...pin });
}

export async function unpinMessage(conv: string, seq: number): Promise<void> {
  state.menu = "";
  const done = await act(async () => {
    await sdk().unpinMessage(conv, seq);
    return true;
  });
  if (done) removePin(conv, seq);
}

function addPin(pin: PinInfo): void {
  const list = (extras.pins[pin.conv] ?? []).filter((p) => p.seq !== pin.seq);
  extras.pins[pin.conv] = [pin, ...list].sort((a, b) => b.ts - a.ts);
}

function removePin(conv: string, seq: number): void {
  if (extras.pins[conv]) extras.pins[conv] = extras.pins[conv].filter((p) => p.seq !== seq);
}

function onPin(e: PinEvent): void {
  if (e.event === "unpinned") {
    removePin(e.conv, e.seq);
    return;
  }
  if (extras.pins[e.conv] === undefined && state.current !== e.conv) return; // read when it opens
  const message = (state.messages[e.conv] ?? []).find((m) => m.seq === e.seq);
  if (message) addPin({ conv: e.conv, seq: e.seq, by: e.by, ts: e.ts, message: { ...message } });
  else void run(() => loadPins(e.conv)); // a message not held here: PINS brings it
}

/** Scroll the open chat to message `seq`, paging back until it is loaded, and highlight it. */
export async function showMessage(conv: string, seq: number): Promise<void> {
  extras.dialog = null;
  for (let pages = 0; pages < SHOW_PAGES && state.current === conv; pages++) {
    if ((state.messages[conv] ?? []).some((m) => m.seq === seq)) break;
    if (!state.hasOlder[conv]) break;
    await run(() => loadOlder(conv));
  }
  state.highlight = "";
  await nextTick();
  state.highlight = `${conv}:${seq}`;
}

/** A line of a message for the pin bar and list. */
export function snippet(m: Message): string {
  if (m.tooLarge) return "message too large to show";
  if (typeof m.content === "string") return m.content.slice(0, 200) || "message";
  const body = m.content as Record<string, unknown>;
  if (m.type === 2) return "[image]";
  if (m.type === 3) return `[file] ${String(body.name ?? "")}`;
  return "[message]";
}

extend({ listen, afterPage, catchUp, reset: resetExtras });
