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

/** A public profile (USERS, USER_FIND, PROFILE_SET, the "profile" event). */
export interface UserProfile {
  user: bigint;
  username: string;
  /** "Deleted user" for a deleted account. */
  nickname: string;
  /** "" (none), a file key of the user's avatar space (fileDownloadGrant gives its URL), or an https URL. */
  avatar: string;
  bio: string;
  /** The account was deleted: its id and username stay, nothing else. */
  deleted: boolean;
}

/** Change of this user's profile; an absent key is left as it is. */
export interface ProfileChange {
  nickname?: string;
  /** "" (none), a key from uploadAvatar, or an https:// URL. */
  avatar?: string;
  bio?: string;
}

/** PASSWORD_CHANGE_OK: this session stays, with a fresh token. */
export interface PasswordChanged {
  token: string;
  /** Unix seconds. */
  expiresAt: number;
  /** The account's other sessions that were closed. */
  closed: number;
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
  // The SDK fills in the three below on every message it hands out; they are optional so
  // that a Message an application builds itself (an optimistic local copy) need not set them.
  /** A reply: the message it quotes; null when not a reply. */
  reply?: Reply | null;
  /** When it was last edited (Unix ms); 0 when never edited. */
  editedAt?: number;
  /**
   * The conversation's change revision at this message's last change in place (an edit, a
   * change of its reactions, its recall); 0 when never changed.
   */
  rev?: number;
  /**
   * A copy made by forward(): the original sender, -1n when not named; 0n when not forwarded.
   * Always set on messages from the SDK; optional so that messages an application builds
   * itself (a local echo of its own send) need not carry it.
   */
  forwardedFrom?: bigint;
  /** In a SYNC or HISTORY page only: the reader deleted it for themselves (a stub, `content` "").
   * The SDK always fills it in; optional so that code building messages itself keeps compiling. */
  hidden?: boolean;
}

/** What a reply quotes (docs/protocol.md section 9.23). */
export interface Reply {
  id: bigint;
  seq: number;
  from: bigint;
  type: number;
  /** The start of its text ("" when recalled, or for types without text). */
  snippet: string;
  recalled: boolean;
}

/** One emoji on one message: how many reacted with it, and the first (up to 10) of them. */
export interface Reaction {
  emoji: string;
  count: number;
  users: bigint[];
}

/** The reactions of message `seq`, as of revision `rev` of its conversation. */
export interface MessageReactions {
  seq: number;
  rev: number;
  /** Empty: every reaction was taken back, or the message recalled. */
  reactions: Reaction[];
}

/** The reply to react()/unreact() and the "reaction" event. */
export interface ReactionEvent {
  conv: string;
  seq: number;
  msgId: bigint;
  user: bigint;
  emoji: string;
  /** true: added; false: taken back. */
  added: boolean;
  /** The message's reactions now. */
  reactions: Reaction[];
  /** The conversation's revision at this change: keep the highest for changes(). */
  rev: number;
  ts: number;
}

export interface Page {
  conv: string;
  msgs: Message[];
  hasMore: boolean;
  /** The reactions of the page's msgs that have any, and of every message in changed. */
  reactions: MessageReactions[];
  /**
   * sync() with changesAfter: the messages up to afterSeq changed in place after that
   * revision (edited, their reactions changed, recalled), as they are now, each once.
   */
  changed: Message[];
  /** sync() with changesAfter: the revision `changed` is complete up to. */
  rev: number;
  /** sync() with changesAfter: more changes follow (sync again with changesAfter = rev). */
  changesMore: boolean;
}

/** What changes() found: the changed messages, their reactions, the revision to keep. */
export interface Changes {
  conv: string;
  changed: Message[];
  reactions: MessageReactions[];
  rev: number;
}

export interface ForwardOptions {
  /** Forward to a group (`to` is the group id). */
  group?: boolean;
  /** The copies do not name their original senders (forwardedFrom -1n). */
  hideSender?: boolean;
  /** The forward's id: copy i is stored with cmid `<cmid>/<i>`; a retry stores nothing twice. */
  cmid?: string;
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
  /** Added: members now. */
  users: bigint[];
  /** Invited instead: their groupAdd setting did not let the caller add them. */
  invited: bigint[];
}

/** GROUP_CREATE's reply: the new group and what became of the members asked for. */
export interface GroupCreated extends GroupInfo {
  /** Added besides the caller. */
  added: bigint[];
  /** Invited instead (groupInvitations on their side). */
  invited: bigint[];
}

/** Who may add a user to a group at once; the others' adds become invitations. */
export type GroupAdd = "anyone" | "friends" | "nobody";

/** A pending invitation into a group. */
export interface InvitationInfo {
  group: bigint;
  inviter: bigint;
  ts: number;
  /** Unix ms: gone from then on. */
  expiresAt: number;
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
  /** The rule in force: the user's choice, or the node's default until they choose. */
  groupAdd: GroupAdd;
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
  reason: "replaced" | "kicked" | "disabled" | "password_changed" | "account_deleted" | string;
  terminal: string;
}

export interface FriendEvent {
  event: "request" | "accepted" | "deleted" | string;
  user: bigint;
  message: string;
  ts: number;
}

export interface GroupEvent {
  /** "created", "joined", ..., "invited" (a new invitation for you: groupInvitations). */
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
