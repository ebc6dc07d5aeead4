/**
 * Frames: the 20-byte little-endian header (struct `<BBHIQI`) followed by a MessagePack body.
 * One frame per binary WebSocket message (docs/protocol.md section 4).
 */
import { decode, encode } from "./msgpack.js";
import { HEADER_SIZE, MAX_BODY_SIZE, VERSION } from "./protocol.js";

export interface Frame {
  version: number;
  op: number;
  flags: number;
  /** u32: the request's id, echoed in its reply or ERROR; 0 on pushes. */
  reqId: number;
  /** u64: receiver user or group id on SEND/MSG_PUSH (and a few pushes), else 0. */
  target: bigint;
  /** The raw MessagePack body (may be empty: the empty map). */
  body: Uint8Array;
}

export class FrameError extends Error {
  override name = "FrameError";
}

/** The bytes of one frame. `body` is a value to encode (a map), or bytes already encoded. */
export function encodeFrame(
  op: number,
  reqId: number,
  body: Record<string, unknown> | Uint8Array | null = null,
  target: bigint | number = 0n,
  flags = 0,
): Uint8Array {
  const payload = body === null ? new Uint8Array(0) : body instanceof Uint8Array ? body : encode(body);
  if (payload.length > MAX_BODY_SIZE) throw new FrameError(`body of ${payload.length} bytes is over ${MAX_BODY_SIZE}`);
  const out = new Uint8Array(HEADER_SIZE + payload.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, VERSION);
  view.setUint8(1, op);
  view.setUint16(2, flags, true);
  view.setUint32(4, reqId >>> 0, true);
  view.setBigUint64(8, BigInt(target), true);
  view.setUint32(16, payload.length, true);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Split a received message into header fields and body bytes (not decoded). */
export function decodeFrame(data: ArrayBuffer | Uint8Array): Frame {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < HEADER_SIZE) throw new FrameError(`frame of ${bytes.length} bytes is shorter than its header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bodyLen = view.getUint32(16, true);
  if (bodyLen !== bytes.length - HEADER_SIZE)
    throw new FrameError(`body_len ${bodyLen} but ${bytes.length - HEADER_SIZE} body bytes`);
  return {
    version: view.getUint8(0),
    op: view.getUint8(1),
    flags: view.getUint16(2, true),
    reqId: view.getUint32(4, true),
    target: view.getBigUint64(8, true),
    body: bytes.subarray(HEADER_SIZE),
  };
}

/** A frame's body as a map; the zero-length body is the empty map. */
export function decodeBody(body: Uint8Array): Record<string, unknown> {
  if (body.length === 0) return {};
  const value = decode(body);
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new FrameError("body is not a map");
  return value as Record<string, unknown>;
}
