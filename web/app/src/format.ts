import { FILE, IMAGE, TEXT } from "./types";

/** A one-line preview of a conversation's newest message. */
export function preview(type: number, text: string, recalled: boolean | undefined): string {
  if (recalled) return "message recalled";
  if (type === 0) return "";
  if (type === TEXT) return text;
  if (type === IMAGE) return "[image]";
  if (type === FILE) return "[file]";
  if (type === 4) return "[voice]";
  if (type === 5) return "[video]";
  if (type === 6) return "[location]";
  if (type === 7) return "[contact]";
  if (type === 8) return "[call]";
  return "[message]";
}

export function clock(ms: number): string {
  if (!ms) return "";
  const at = new Date(ms);
  const now = new Date();
  if (at.toDateString() === now.toDateString()) return at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return at.toLocaleDateString([], { month: "short", day: "numeric" });
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** "Today", "Yesterday", a weekday within the week, else the date: a day separator's label. */
export function day(ms: number, now = Date.now()): string {
  const at = new Date(ms);
  const today = new Date(now);
  today.setHours(0, 0, 0, 0);
  const start = new Date(at);
  start.setHours(0, 0, 0, 0);
  const days = Math.round((today.getTime() - start.getTime()) / 86_400_000);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  if (days > 1 && days < 7) return at.toLocaleDateString([], { weekday: "long" });
  const sameYear = at.getFullYear() === today.getFullYear();
  return at.toLocaleDateString([], sameYear ? { month: "long", day: "numeric" } : { year: "numeric", month: "long", day: "numeric" });
}

/** The hour and minute of a message. */
export function time(ms: number): string {
  return ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
}

/** Up to two initials of a name, for an avatar. */
export function initials(name: string): string {
  const words = name.replace(/^user \d+$/, "?").split(/[\s._-]+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((w) => [...w][0] ?? "").join("").toUpperCase() || "?";
}

/** A colour of its own for a name: a hue from the name's hash, at a lightness readable
 * under white text in light and dark themes. */
export function hue(name: string): number {
  let hash = 2166136261;
  for (const ch of name) hash = Math.imul(hash ^ (ch.codePointAt(0) ?? 0), 16777619);
  return (hash >>> 0) % 360;
}
