/**
 * edgeim-sdk: a client for edgeim's wire protocol v1, for browsers and Node.js 20+.
 *
 *     import { Client, ServerError } from "edgeim-sdk";
 *     const client = new Client({ urls: "ws://127.0.0.1:8765/ws" });
 *     await client.connect();
 *     await client.login("alice", "secret-pw");
 *     client.on("message", (m) => console.log(m.conv, m.seq, m.content));
 *     await client.send(bobId, "hi");
 *
 * See docs/sdk.md.
 */
export { Client } from "./client.js";
export type { ClientOptions, GroupSendOptions, SearchOptions, SendOptions } from "./client.js";
export { DisconnectedError, FileTransferError, RequestTimeoutError, ServerError } from "./errors.js";
export type { ClientEvents, EventName, Handler } from "./events.js";
export { decodeBody, decodeFrame, encodeFrame, FrameError } from "./frame.js";
export type { Frame } from "./frame.js";
export { camel, fromWire, toId } from "./ids.js";
export { CodecError, decode as decodeMsgpack, encode as encodeMsgpack, Ext } from "./msgpack.js";
export {
  CloseCode,
  ErrorCode,
  errorName,
  Flag,
  HEADER_SIZE,
  MAX_BODY_SIZE,
  MAX_FRAME_SIZE,
  Op,
  SUBPROTOCOL,
  VERSION,
} from "./protocol.js";
export type { ErrorCodeName, OpCode, OpName } from "./protocol.js";
export type * from "./types.js";
