/**
 * From wire bodies to the SDK's API shapes: snake_case keys become camelCase, every 64-bit id
 * becomes a bigint, and keys the server leaves out when they hold their default are filled in.
 *
 * Ids are recognised by key name (the protocol uses the same few names everywhere): the
 * server encodes each int in its shortest form, so the same id can decode as a number today
 * and as a bigint once ids grow; normalising by name gives the application one type.
 */

/** Keys whose value is one id (user, group, message, call). */
const ID_KEYS = new Set([
  "id",
  "msg_id",
  "user_id",
  "user",
  "from",
  "to",
  "peer",
  "group",
  "owner",
  "actor",
  "caller",
  "callee",
  "call",
  "recalled_by",
  "last_from",
  "inviter",
  "forwarded_from",
  "by",
]);
/** Keys whose value is a list that may hold ids (its integer items become bigints). */
const ID_LIST_KEYS = new Set(["users", "mentions", "added", "invited"]);
/** Keys whose value is application data, left exactly as decoded. */
const OPAQUE_KEYS = new Set(["content"]);

/** An id from whatever the decoder produced (number or bigint). */
export function toId(value: unknown): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  throw new TypeError(`not an id: ${String(value)}`);
}

/** `after_seq` -> `afterSeq`. */
export function camel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** A decoded body (or any value in it) in API shape: camelCase keys, bigint ids. */
export function fromWire<T>(value: unknown): T {
  return convert(value) as T;
}

function convert(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(convert);
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    let converted: unknown;
    if (OPAQUE_KEYS.has(key)) converted = item;
    else if (ID_KEYS.has(key) && (typeof item === "number" || typeof item === "bigint")) converted = toId(item);
    else if (ID_LIST_KEYS.has(key) && Array.isArray(item))
      converted = item.map((x) => (typeof x === "number" || typeof x === "bigint" ? toId(x) : convert(x)));
    else converted = convert(item);
    Object.defineProperty(out, camel(key), { value: converted, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Message keys left out of the map when they hold their default (docs/protocol.md 9.10). */
const MESSAGE_DEFAULTS = {
  mentions: [] as bigint[], mentionAll: false, recalledBy: 0n, recalledAt: 0, tooLarge: false,
  reply: null, editedAt: 0, rev: 0, forwardedFrom: 0n, hidden: false,
};

/** Page keys left out when they hold their default (docs/protocol.md 9.7). */
export function withPageDefaults<T extends { msgs: object[] }>(page: T): T {
  const out = { ...page } as Record<string, unknown>;
  out["msgs"] = page.msgs.map(withMessageDefaults);
  out["reactions"] = (out["reactions"] as unknown[] | undefined) ?? [];
  out["changed"] = ((out["changed"] as object[] | undefined) ?? []).map(withMessageDefaults);
  out["rev"] = (out["rev"] as number | undefined) ?? 0;
  out["changesMore"] = (out["changesMore"] as boolean | undefined) ?? false;
  return out as T;
}

/** A message in API shape with its omitted keys filled in. */
export function withMessageDefaults<T extends object>(m: T): T {
  const out = { ...m } as Record<string, unknown>;
  for (const [key, value] of Object.entries(MESSAGE_DEFAULTS)) {
    if (out[key] === undefined) out[key] = Array.isArray(value) ? [] : value;
  }
  return out as T;
}

/** A conversation entry in API shape with its optional flags filled in. */
export function withConversationDefaults<T extends object>(c: T): T {
  const out = { ...c } as Record<string, unknown>;
  out["mentioned"] ??= false;
  out["lastRecalled"] ??= false;
  out["clearedSeq"] ??= 0;
  out["viewVer"] ??= 0;
  return out as T;
}
