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
