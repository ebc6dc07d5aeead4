/**
 * Wire protocol v1 constants, as in docs/protocol.md (and core_ext/protocol.py, where the
 * server keeps them). Keep the numbers in step with those two.
 */

export const VERSION = 1;
/** The WebSocket subprotocol that negotiates version 1 (docs/protocol.md section 3). */
export const SUBPROTOCOL = "edgeim.v1";
export const HEADER_SIZE = 20;
/** The largest WebSocket message either side sends or accepts, header included. */
export const MAX_FRAME_SIZE = 64 * 1024;
export const MAX_BODY_SIZE = MAX_FRAME_SIZE - HEADER_SIZE;
/** A reply carries its request's op with this bit set. */
export const RESPONSE_BIT = 0x80;
/** Items per list page the server allows (FRIENDS, GROUPS, GROUP_MEMBERS, CONVERSATIONS...). */
export const MAX_LIST = 500;

/** Operations: requests 0x01..0x3F and 0x50..0x7E, pushes 0x40..0x4F, replies request | 0x80, ERROR 0xFF. */
export const Op = {
  PING: 0x01,
  REGISTER: 0x02,
  LOGIN: 0x03,
  TOKEN_LOGIN: 0x04,
  LOGOUT: 0x05,
  USER_FIND: 0x06,
  USERS: 0x07,
  CALL_INVITE: 0x08,
  CALL_ACCEPT: 0x09,
  CALL_REJECT: 0x0a,
  CALL_CANCEL: 0x0b,
  CALL_HANGUP: 0x0c,
  CALL_ICE: 0x0d,
  SEND: 0x10,
  SYNC: 0x11,
  HISTORY: 0x12,
  CONVERSATIONS: 0x13,
  CONV_SET: 0x14,
  READ: 0x15,
  READERS: 0x16,
  RECALL: 0x17,
  SEARCH: 0x18,
  TYPING: 0x19,
  FILE_UPLOAD: 0x1a,
  FILE_DOWNLOAD: 0x1b,
  FRIEND_REQUEST: 0x20,
  FRIEND_ACCEPT: 0x21,
  FRIEND_REJECT: 0x22,
  FRIEND_DELETE: 0x23,
  FRIENDS: 0x24,
  FRIEND_REQUESTS: 0x25,
  FRIEND_REMARK: 0x26,
  BLOCK: 0x27,
  UNBLOCK: 0x28,
  PRESENCE: 0x29,
  PRESENCE_SUBSCRIBE: 0x2a,
  PRESENCE_UNSUBSCRIBE: 0x2b,
  SETTINGS: 0x2c,
  BLOCKS: 0x2d,
  GROUP_CREATE: 0x30,
  GROUP_DISSOLVE: 0x31,
  GROUP_UPDATE: 0x32,
  GROUP_INFO: 0x33,
  GROUPS: 0x34,
  GROUP_MEMBERS: 0x35,
  GROUP_INVITE: 0x36,
  GROUP_JOIN: 0x37,
  GROUP_JOIN_REQUESTS: 0x38,
  GROUP_APPROVE: 0x39,
  GROUP_QUIT: 0x3a,
  GROUP_KICK: 0x3b,
  GROUP_SET_ROLE: 0x3c,
  GROUP_TRANSFER: 0x3d,
  GROUP_MUTE: 0x3e,
  GROUP_MUTE_ALL: 0x3f,
  GROUP_INVITATIONS: 0x68,
  GROUP_INVITATION_ACCEPT: 0x69,
  GROUP_INVITATION_DECLINE: 0x6a,
  EDIT: 0x59,
  PROFILE_SET: 0x50,
  PASSWORD_CHANGE: 0x51,
  ACCOUNT_DELETE: 0x52,
  REACT: 0x58,
  FORWARD: 0x5a,
  // per-user views and message pins
  DELETE_FOR_ME: 0x60,
  CLEAR_HISTORY: 0x61,
  PIN_MESSAGE: 0x62,
  UNPIN_MESSAGE: 0x63,
  PINS: 0x64,
  // pushes (req_id 0)
  MSG_PUSH: 0x40,
  KICKED: 0x41,
  FRIEND_PUSH: 0x42,
  GROUP_PUSH: 0x43,
  READ_PUSH: 0x44,
  CONV_PUSH: 0x45,
  RECALL_PUSH: 0x46,
  TYPING_PUSH: 0x47,
  PRESENCE_PUSH: 0x48,
  CALL_PUSH: 0x49,
  PROFILE_PUSH: 0x4a,
  REACTION_PUSH: 0x4b,
  EDIT_PUSH: 0x4c,
  PIN_PUSH: 0x4d,
  VIEW_PUSH: 0x4e,
  ERROR: 0xff,
} as const;
export type OpName = keyof typeof Op;
export type OpCode = (typeof Op)[OpName];

/** Header flag bits; every other bit must be 0. */
export const Flag = {
  /** A SEND retried with the same cmid (informational: the server dedups by cmid). */
  RETRY: 0x0001,
  /** SEND and MSG_PUSH: the header's target is a group id. */
  GROUP: 0x0002,
} as const;

/** Codes of ERROR frames (docs/protocol.md section 12). */
export const ErrorCode = {
  BAD_FRAME: 1000,
  BAD_VERSION: 1001,
  UNKNOWN_OP: 1002,
  BAD_BODY: 1003,
  FRAME_TOO_LARGE: 1004,
  BAD_FLAGS: 1005,
  NOT_AUTHENTICATED: 2000,
  BAD_CREDENTIALS: 2001,
  TOKEN_EXPIRED: 2002,
  TOKEN_INVALID: 2003,
  USERNAME_TAKEN: 2004,
  ALREADY_AUTHENTICATED: 2005,
  ACCOUNT_DISABLED: 2006,
  ACCOUNT_DELETED: 2007,
  USER_NOT_FOUND: 3000,
  FORBIDDEN: 3001,
  INVALID_ARGUMENT: 3002,
  NOT_FRIENDS: 3003,
  BLOCKED: 3004,
  CONFLICT: 3005,
  NOT_FOUND: 3006,
  MUTED: 3007,
  GROUP_FULL: 3008,
  RECALL_EXPIRED: 3009,
  FILE_TOO_LARGE: 3010,
  FILE_TYPE_REFUSED: 3011,
  BUSY: 3012,
  SEARCH_TIMEOUT: 3013,
  FILE_QUOTA_EXCEEDED: 3014,
  INVITATIONS_FULL: 3030,
  EDIT_EXPIRED: 3020,
  REPLY_NOT_FOUND: 3021,
  NOT_EDITABLE: 3022,
  REACTION_LIMIT: 3023,
  MESSAGE_RECALLED: 3024,
  FORWARD_LIMIT: 3025,
  NOT_FORWARDABLE: 3026,
  PINS_FULL: 3027,
  RATE_LIMITED: 4000,
  TOO_MANY_SESSIONS: 4001,
  INTERNAL: 5000,
  UNAVAILABLE: 5001,
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;

/** The name of an error code ("NOT_FOUND"), or "UNKNOWN_<code>" for one this SDK predates. */
export function errorName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) {
    if (value === code) return name;
  }
  return `UNKNOWN_${code}`;
}

/** WebSocket close codes the server uses (docs/protocol.md section 13). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  REPLACED: 4001,
  AUTH_TIMEOUT: 4002,
  IDLE_TIMEOUT: 4003,
  POLICY: 4008,
  LOGGED_OUT: 4009,
} as const;
