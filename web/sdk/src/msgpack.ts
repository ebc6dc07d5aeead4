/**
 * A small MessagePack codec: the subset edgeim bodies use (nil, bool, int, float, str, bin,
 * array, map), plus ext decoded as an opaque value.
 *
 * Written here rather than taken from npm so that integers follow the SDK's rule: an integer
 * that a JavaScript number holds exactly decodes as a number, anything wider as a bigint (the
 * server picks the shortest encoding, so a 64-bit id may come as 1 byte or 9). ids.ts then
 * turns every id field into a bigint whatever its width. A bigint encodes as a MessagePack
 * integer (shortest form, up to 64 bits), never as a float or a string.
 */

export class CodecError extends Error {
  override name = "CodecError";
}

/** A MessagePack ext value (the server sends none; kept so an unknown one does not fail a body). */
export class Ext {
  constructor(
    readonly type: number,
    readonly data: Uint8Array,
  ) {}
}

const textEncoder = new TextEncoder();
// fatal: invalid UTF-8 is a malformed body, not text to guess at
const textDecoder = new TextDecoder("utf-8", { fatal: true });

const U32 = 0x1_0000_0000;
const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;

/** Growable output buffer. */
class Writer {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  length = 0;

  private reserve(n: number): number {
    const at = this.length;
    if (at + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < at + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, at));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    this.length = at + n;
    return at;
  }

  // each writer reserves first, then reads this.buf / this.view: reserve may replace them
  u8(v: number): void {
    const at = this.reserve(1);
    this.buf[at] = v;
  }
  u16(v: number): void {
    const at = this.reserve(2);
    this.view.setUint16(at, v);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v);
  }
  u64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, v);
  }
  i64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigInt64(at, v);
  }
  f64(v: number): void {
    const at = this.reserve(8);
    this.view.setFloat64(at, v);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length);
    this.buf.set(b, at);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Encode one value. Objects become maps (keys whose value is undefined are left out). */
export function encode(value: unknown): Uint8Array {
  const w = new Writer();
  write(w, value, 0);
  return w.result();
}

function write(w: Writer, value: unknown, depth: number): void {
  if (depth > 100) throw new CodecError("value nested too deep");
  if (value === null || value === undefined) {
    w.u8(0xc0);
  } else if (value === false) {
    w.u8(0xc2);
  } else if (value === true) {
    w.u8(0xc3);
  } else if (typeof value === "number") {
    if (Number.isSafeInteger(value)) writeInt(w, BigInt(value));
    else {
      w.u8(0xcb);
      w.f64(value);
    }
  } else if (typeof value === "bigint") {
    writeInt(w, value);
  } else if (typeof value === "string") {
    writeStr(w, value);
  } else if (value instanceof Uint8Array) {
    writeHead(w, value.length, [0xc4, 0xc5, 0xc6]);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    writeHead(w, value.length, [0xdc, 0xdd], 0x90);
    for (const item of value) write(w, item, depth + 1);
  } else if (value instanceof Map) {
    writeHead(w, value.size, [0xde, 0xdf], 0x80);
    for (const [k, v] of value) {
      write(w, k, depth + 1);
      write(w, v, depth + 1);
    }
  } else if (typeof value === "object") {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    writeHead(w, entries.length, [0xde, 0xdf], 0x80);
    for (const [k, v] of entries) {
      writeStr(w, k);
      write(w, v, depth + 1);
    }
  } else {
    throw new CodecError(`cannot encode a ${typeof value}`);
  }
}

function writeInt(w: Writer, v: bigint): void {
  if (v < INT64_MIN || v > UINT64_MAX) throw new CodecError(`integer ${v} does not fit 64 bits`);
  if (v >= 0n) {
    const n = Number(v);
    if (n < 0x80) w.u8(n);
    else if (n < 0x100) (w.u8(0xcc), w.u8(n));
    else if (n < 0x10000) (w.u8(0xcd), w.u16(n));
    else if (n < U32) (w.u8(0xce), w.u32(n));
    else (w.u8(0xcf), w.u64(v));
  } else {
    const n = Number(v);
    if (n >= -32) w.u8(n & 0xff);
    else if (n >= -0x80) (w.u8(0xd0), w.u8(n & 0xff));
    else if (n >= -0x8000) (w.u8(0xd1), w.u16(n & 0xffff));
    else if (n >= -0x8000_0000) (w.u8(0xd2), w.u32(n >>> 0));
    else (w.u8(0xd3), w.i64(v));
  }
}

function writeStr(w: Writer, s: string): void {
  const bytes = textEncoder.encode(s);
  writeHead(w, bytes.length, [0xd9, 0xda, 0xdb], 0xa0, 32);
  w.bytes(bytes);
}

/**
 * A length header: the fix form (`fix` | n, when n < `fixLimit`), else the 8-, 16- or 32-bit
 * form from `wide` (arrays and maps have no 8-bit form: `wide` then starts at 16 bits).
 */
function writeHead(w: Writer, n: number, wide: number[], fix?: number, fixLimit = 16): void {
  if (fix !== undefined && n < fixLimit) return w.u8(fix | n);
  const forms = wide.length === 3 ? [0xff, 0xffff, 0xffff_ffff] : [0xffff, 0xffff_ffff];
  for (let i = 0; i < forms.length; i++) {
    if (n <= forms[i]!) {
      w.u8(wide[i]!);
      const bits = wide.length === 3 ? i : i + 1; // 0: 8-bit, 1: 16-bit, 2: 32-bit length
      if (bits === 0) w.u8(n);
      else if (bits === 1) w.u16(n);
      else w.u32(n);
      return;
    }
  }
  throw new CodecError(`length ${n} too large`);
}

/** Decode exactly one value from `bytes`; trailing bytes are an error (as on the server). */
export function decode(bytes: Uint8Array): unknown {
  const r = new Reader(bytes);
  const value = r.value(0);
  if (r.pos !== bytes.length) throw new CodecError(`${bytes.length - r.pos} trailing bytes`);
  return value;
}

class Reader {
  pos = 0;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.bytes.length) throw new CodecError("truncated MessagePack");
    this.pos = at + n;
    return at;
  }
  private u8(): number {
    return this.view.getUint8(this.need(1));
  }
  private u16(): number {
    return this.view.getUint16(this.need(2));
  }
  private u32(): number {
    return this.view.getUint32(this.need(4));
  }
  private raw(n: number): Uint8Array {
    const at = this.need(n);
    return this.bytes.subarray(at, at + n);
  }
  private str(n: number): string {
    try {
      return textDecoder.decode(this.raw(n));
    } catch {
      throw new CodecError("invalid UTF-8 in a str");
    }
  }

  value(depth: number): unknown {
    if (depth > 100) throw new CodecError("MessagePack nested too deep");
    const b = this.u8();
    if (b < 0x80) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b < 0x90) return this.map(b & 0x0f, depth);
    if (b < 0xa0) return this.array(b & 0x0f, depth);
    if (b < 0xc0) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.raw(this.u8()).slice();
      case 0xc5:
        return this.raw(this.u16()).slice();
      case 0xc6:
        return this.raw(this.u32()).slice();
      case 0xc7:
        return this.ext(this.u8());
      case 0xc8:
        return this.ext(this.u16());
      case 0xc9:
        return this.ext(this.u32());
      case 0xca:
        return this.view.getFloat32(this.need(4));
      case 0xcb:
        return this.view.getFloat64(this.need(8));
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf:
        return narrow(this.view.getBigUint64(this.need(8)));
      case 0xd0:
        return this.view.getInt8(this.need(1));
      case 0xd1:
        return this.view.getInt16(this.need(2));
      case 0xd2:
        return this.view.getInt32(this.need(4));
      case 0xd3:
        return narrow(this.view.getBigInt64(this.need(8)));
      case 0xd4:
        return this.ext(1);
      case 0xd5:
        return this.ext(2);
      case 0xd6:
        return this.ext(4);
      case 0xd7:
        return this.ext(8);
      case 0xd8:
        return this.ext(16);
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default: // 0xc1 is never used
        throw new CodecError(`invalid MessagePack byte 0x${b.toString(16)}`);
    }
  }

  private ext(n: number): Ext {
    const type = this.view.getInt8(this.need(1));
    return new Ext(type, this.raw(n).slice());
  }

  private array(n: number, depth: number): unknown[] {
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(this.value(depth + 1));
    return out;
  }

  private map(n: number, depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = String(this.value(depth + 1));
      const value = this.value(depth + 1);
      // a "__proto__" key must stay a plain key, not replace the object's prototype
      Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
}

/** A 64-bit integer as a number when a number holds it exactly, else as a bigint. */
function narrow(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
