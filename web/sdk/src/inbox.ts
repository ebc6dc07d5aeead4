/**
 * Delivery to the application: each (conv, seq) once, in seq order per conversation.
 *
 * Per conversation the inbox keeps a mark, the seq up to which the application has every
 * message, and the messages that came beyond a gap, held until the gap closes: by the late
 * push itself, or by a SYNC page that brings the missing seqs or shows they are not this
 * user's (a group's messages before they joined). The client owns the network side: it
 * feeds pushes, acks and SYNC pages in, and syncs a conversation when told a gap opened.
 */
import type { Message } from "./types.js";

export class Inbox {
  /** Per conversation, the seq up to which the application has every message. */
  readonly lastSeqs = new Map<string, number>();
  // messages held above a gap, per conversation; null: a seq the application has (its own send)
  private readonly ahead = new Map<string, Map<number, Message | null>>();

  /**
   * @param deliver hands one message to the application
   * @param gapOpened a conversation now holds messages beyond a gap
   * @param gapClosed that conversation has no gap any more
   */
  constructor(
    private readonly deliver: (message: Message) => void,
    private readonly gapOpened: (conv: string) => void,
    private readonly gapClosed: (conv: string) => void,
  ) {}

  mark(conv: string): number {
    return this.lastSeqs.get(conv) ?? 0;
  }

  /** True while `conv` holds messages beyond a gap. */
  hasGap(conv: string): boolean {
    return this.ahead.has(conv);
  }

  /** The conversations with a gap, each with the highest seq held beyond it. */
  *gaps(): Iterable<[string, number]> {
    for (const [conv, held] of this.ahead) yield [conv, Math.max(...held.keys())];
  }

  /**
   * (conv, seq) exists: deliver `message` when it is the next seq, else hold it beyond the
   * gap (null: the application has it already, e.g. its own send). False if seen before.
   */
  accept(conv: string, seq: number, message: Message | null): boolean {
    const mark = this.mark(conv);
    if (seq <= mark) return false;
    let held = this.ahead.get(conv);
    if (held?.has(seq)) return false;
    if (seq === mark + 1) {
      this.lastSeqs.set(conv, seq);
      if (message) this.deliver(message);
      this.drain(conv);
      return true;
    }
    if (!held) this.ahead.set(conv, (held = new Map()));
    held.set(seq, message);
    this.gapOpened(conv);
    return true;
  }

  /**
   * Every seq of `conv` up to `seq` is accounted for: the ones not held are not this user's,
   * or the application has them from a page it asked for. Held messages up to `seq` are
   * delivered (`deliverHeld`: a catch-up) or dropped (the caller's own SYNC page has them).
   */
  cover(conv: string, seq: number, deliverHeld: boolean): void {
    if (seq <= this.mark(conv)) return;
    const held = this.ahead.get(conv);
    const due: Message[] = [];
    if (held) {
      for (const s of [...held.keys()].sort((a, b) => a - b)) {
        if (s > seq) break;
        const message = held.get(s);
        held.delete(s);
        if (message && deliverHeld) due.push(message);
      }
    }
    this.lastSeqs.set(conv, seq);
    for (const message of due) this.deliver(message);
    this.drain(conv);
  }

  /** Deliver the held messages that now follow the mark without a gap. */
  private drain(conv: string): void {
    const held = this.ahead.get(conv);
    if (!held) return;
    let mark = this.mark(conv);
    while (held.has(mark + 1)) {
      const message = held.get(++mark);
      held.delete(mark);
      this.lastSeqs.set(conv, mark);
      if (message) this.deliver(message);
    }
    if (held.size === 0) {
      this.ahead.delete(conv);
      this.gapClosed(conv);
    }
  }
}
