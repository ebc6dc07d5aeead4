/**
 * The bodies of docs/protocol.md in API shape: camelCase keys, every 64-bit id a bigint,
 * times as numbers (`ts`, `lastTs`... in Unix ms; `expiresAt` in Unix seconds).
 */

/** An id argument: a bigint, or a number for ids that a number holds exactly. */
export type IdLike = bigint | number;

/** Message content: a string for text (type 1), else a map of the type's schema (section 10.5). */
export type Content = string | Record<string, unknown>;

export interface LoginOk {
  userId: bigint;
  token: string;
  /** Unix seconds. */
  expiresAt: number;
  terminal: string;
  node: string;
}

export interface UserProfile {
  user: bigint;
  username: string;
  nickname: string;
}

export interface SendAck {
  cmid: string;
  msgId: bigint;
  conv: string;
  seq: number;
  ts: number;
}

export interface Message {
  id: bigint;
  conv: string;
  seq: number;
  from: bigint;
  /** The receiver's user id (private) or the group's id (group). */
  to: bigint;
  cmid: string;
  type: number;
  /** As sent; "" once recalled. Integers beyond 2^53 in a map come as bigint. */
  content: Content;
  ts: number;
  mentions: bigint[];
  mentionAll: boolean;
  /** Who recalled it (a tombstone); 0n when not recalled. */
  recalledBy: bigint;
  recalledAt: number;
  /** In a page only: stored by an older server too large for a frame; `content` is "". */
  tooLarge: boolean;
  /** In a SYNC or HISTORY page only: the reader deleted it for themselves (a stub, `content` "").
   * The SDK always fills it in; optional so that code building messages itself keeps compiling. */
  hidden?: boolean;
}

export interface Page {
  conv: string;
  msgs: Message[];
  hasMore: boolean;
}

export interface SearchPage {
  msgs: Message[];
  hasMore: boolean;
}

export interface ConversationInfo {
  conv: string;
  kind: "private" | "group";
  /** Private: the other user. Group: 0n. */
  peer: bigint;
  /** Group: its id. Private: 0n. */
  group: bigint;
  name: string;
  lastSeq: number;
  lastTs: number;
  lastFrom: bigint;
  lastType: number;
  lastText: string;
  unread: number;
  readSeq: number;
  pinned: boolean;
  muted: boolean;
  mentioned: boolean;
  lastRecalled: boolean;
  /** The caller cleared their view up to this seq (clearHistory). The SDK always fills it
   * and viewVer in; optional so that code building entries itself keeps compiling. */
  clearedSeq?: number;
  /** Grows with each deleteForMe and clearHistory of the caller here: a device that knew
   * another value reads again (history) what it holds; the stubs say what was deleted. */
  viewVer?: number;
}

export interface ConversationList {
  convs: ConversationInfo[];
  nextCursor: string;
  hasMore: boolean;
}

export interface ConvState {
  conv: string;
  pinned: boolean;
  muted: boolean;
  hidden: boolean;
}

export interface ConvSetOptions {
  pinned?: boolean;
  muted?: boolean;
  hidden?: boolean;
}

/** A read cursor: READ_OK and READ_PUSH. */
export interface ReadMark {
  conv: string;
  user: bigint;
  seq: number;
}

export interface ReadersPage {
  conv: string;
  seq: number;
  count: number;
  users: bigint[];
  hasMore: boolean;
}

export interface FriendInfo {
  user: bigint;
  remark: string;
  since: number;
}

/** A pending friend request, or a request to join a group. */
export interface FriendRequestInfo {
  user: bigint;
  message: string;
  ts: number;
}

export type JoinMode = "open" | "approval";
export type GroupRole = "owner" | "admin" | "member";

export interface GroupInfo {
  group: bigint;
  name: string;
  avatar: string;
  notice: string;
  owner: bigint;
  joinMode: JoinMode;
  muteAll: boolean;
  /** How many members. */
  members: number;
  maxMembers: number;
  createdAt: number;
  /** The caller's role; "" for a non-member. */
  role: GroupRole | "";
}

export interface GroupCreateOptions {
  avatar?: string;
  notice?: string;
  joinMode?: JoinMode;
}

export interface GroupUpdateOptions {
  name?: string;
  avatar?: string;
  notice?: string;
  joinMode?: JoinMode;
}

export interface MemberInfo {
  user: bigint;
  role: GroupRole;
  mutedUntil: number;
  joinedAt: number;
}

export interface GroupUsersDone {
  group: bigint;
  users: bigint[];
}

export interface JoinResult {
  group: bigint;
  status: "joined" | "pending";
}

export interface JoinRequestList {
  group: bigint;
  requests: FriendRequestInfo[];
  /** More follow: ask again with `after` = the last `user` (groupJoinRequestsPage). */
  hasMore: boolean;
}

export interface CallStarted {
  call: bigint;
  ts: number;
}

export interface TerminalInfo {
  terminal: string;
}

export interface UserPresence {
  user: bigint;
  online: boolean;
  terminals: TerminalInfo[];
}

export interface UserSettings {
  invisible: boolean;
}

export interface HttpHeader {
  name: string;
  value: string;
}

export interface FileUploadGrant {
  key: string;
  url: string;
  headers: HttpHeader[];
  /** Unix seconds. */
  expiresAt: number;
}

export interface FileDownloadGrant {
  key: string;
  url: string;
  expiresAt: number;
  name: string;
  size: number;
  mime: string;
}

// -- pushes ---------------------------------------------------------------------------------

export interface Kicked {
  reason: "replaced" | "kicked" | "disabled" | string;
  terminal: string;
}

export interface FriendEvent {
  event: "request" | "accepted" | "deleted" | string;
  user: bigint;
  message: string;
  ts: number;
}

export interface GroupEvent {
  event: string;
  group: bigint;
  actor: bigint;
  users: bigint[];
  role: string;
  until: number;
  ts: number;
}

export interface TypingEvent {
  conv: string;
  user: bigint;
  typing: boolean;
  ts: number;
}

export interface CallEvent {
  event: "ring" | "accepted" | "answered_elsewhere" | "rejected" | "cancelled" | "hangup" | "ice" | "timeout" | string;
  call: bigint;
  caller: bigint;
  callee: bigint;
  kind: "audio" | "video" | string;
  terminal: string;
  sdp: string;
  candidate: string;
  durationMs: number;
  ts: number;
}

/** The "disconnected" event: why the connection went, and whether the client comes back. */
export interface DisconnectInfo {
  /** The WebSocket close code (1006 when the connection just died). */
  code: number;
  reason: string;
  /** True when the client reconnects by itself (auto-reconnect, not kicked or logged out). */
  willReconnect: boolean;
}

/** The "reconnected" event. */
export interface ReconnectInfo {
  url: string;
  /** Reconnections made so far by this client. */
  reconnects: number;
  /** Unacknowledged sends that were sent again (with their original cmid). */
  resent: number;
  /** Messages the catch-up delivered as "message" events. */
  caughtUp: number;
}

/** DELETE_FOR_ME_OK, CLEAR_HISTORY_OK and the "view" event (the user's other devices). */
export interface ViewEvent {
  conv: string;
  event: "deleted" | "cleared";
  /** deleted: the messages deleted; cleared: []. */
  seqs: number[];
  clearedSeq: number;
  viewVer: number;
}

/** A message pin of a conversation (PIN_MESSAGE_OK, the items of PINS_OK). */
export interface PinInfo {
  conv: string;
  seq: number;
  by: bigint;
  ts: number;
  message: Message;
}

export interface PinList {
  conv: string;
  /** Newest pin first. */
  pins: PinInfo[];
  /** How many message pins the conversation may hold. */
  max: number;
}

/** The "pin" event: a message of `conv` was pinned or unpinned (a recall unpins too). */
export interface PinEvent {
  event: "pinned" | "unpinned";
  conv: string;
  seq: number;
  by: bigint;
  ts: number;
}
