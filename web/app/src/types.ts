/** The shapes the app reads from edgeim-sdk (docs/protocol.md, camelCased; 64-bit ids as
 * bigint). Declared here, structurally, so the app states exactly which fields it relies on;
 * the SDK's own types are assigned to these and the compiler checks they agree. */

export type Content = string | Record<string, unknown>;

export interface Message {
  id: bigint;
  conv: string;
  seq: number;
  from: bigint;
  to: bigint;
  cmid: string;
  type: number;
  content: Content;
  ts: number;
  mentions?: bigint[];
  mentionAll?: boolean;
  recalledBy?: bigint;
  recalledAt?: number;
}

export interface Conversation {
  conv: string;
  kind: string; // "private" | "group"
  peer: bigint;
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
  mentioned?: boolean;
  lastRecalled?: boolean;
}

export interface Profile {
  user: bigint;
  username: string;
  nickname: string;
}

export interface Friend {
  user: bigint;
  remark: string;
  since: number;
}

export interface FriendRequest {
  user: bigint;
  message: string;
  ts: number;
}

export interface Group {
  group: bigint;
  name: string;
  owner: bigint;
  joinMode: string;
  muteAll: boolean;
  members: number;
  role: string;
}

export interface Member {
  user: bigint;
  role: string;
  mutedUntil: number;
  joinedAt: number;
}

/** Content types of docs/protocol.md section 10.5 that the app shows. */
export const TEXT = 1;
export const IMAGE = 2;
export const FILE = 3;
