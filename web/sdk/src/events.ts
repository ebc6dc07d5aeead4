/**
 * Typed events: `client.on(name, handler)` returns an unsubscribe function. A handler that
 * throws does not stop the others or the client (the error goes to "error" listeners, or the
 * console when there are none: a bug in an application's handler must not break delivery).
 */
import type { ServerError } from "./errors.js";
import type {
  CallEvent,
  Changes,
  ConvState,
  DisconnectInfo,
  FriendEvent,
  GroupEvent,
  Kicked,
  Message,
  ReactionEvent,
  PinEvent,
  ReadMark,
  ReconnectInfo,
  TypingEvent,
  UserPresence,
  UserProfile,
  ViewEvent,
} from "./types.js";

export interface ClientEvents {
  /** A message this client did not send, each (conv, seq) once, in seq order per conversation. */
  message: Message;
  /** A message was recalled: the tombstone to show at (conv, seq). */
  recall: Message;
  /** A message was edited: the message as it is now, to show at (conv, seq) with its editedAt. */
  edit: Message;
  /** A read cursor moved: the user's other devices, or the peer's read receipt. */
  read: ReadMark;
  /** The user's view of a conversation changed on another device (pinned, muted, hidden). */
  conv: ConvState;
  friend: FriendEvent;
  group: GroupEvent;
  typing: TypingEvent;
  presence: UserPresence;
  call: CallEvent;
  /** A friend's or group member's new profile (or deletion), or this user's from another device. */
  profile: UserProfile;
  /** A reaction was added or taken back on another device (REACTION_PUSH). */
  reaction: ReactionEvent;
  /**
   * After a reconnect: what changed in place (edits, reactions, recalls) while this client
   * was away in a conversation it holds messages of (catchUpChanges): each message as it is
   * now, to show at its (conv, seq), with its reactions.
   */
  changes: Changes;
  /** A message pin of one of the user's conversations changed (pinned, unpinned, recalled). */
  pin: PinEvent;
  /** The user deleted messages for themselves or cleared a history on another device. */
  view: ViewEvent;
  /** Another login took this (user, terminal), or an operator closed it; no auto-reconnect. */
  kicked: Kicked;
  /** The WebSocket opened (first connect and each reconnect attempt that reached a node). */
  connected: { url: string };
  disconnected: DisconnectInfo;
  /** Logged in again after a drop, unacknowledged sends resent, missed messages delivered. */
  reconnected: ReconnectInfo;
  /** An ERROR frame answering no request, a failed background sync, a handler's exception. */
  error: ServerError | Error;
}

export type EventName = keyof ClientEvents;
export type Handler<K extends EventName> = (event: ClientEvents[K]) => void;

export class Emitter {
  private readonly handlers = new Map<EventName, Set<Handler<EventName>>>();

  on<K extends EventName>(name: K, handler: Handler<K>): () => void {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(handler as Handler<EventName>);
    return () => this.off(name, handler);
  }

  off<K extends EventName>(name: K, handler: Handler<K>): void {
    this.handlers.get(name)?.delete(handler as Handler<EventName>);
  }

  /** Call `name`'s handlers now, in the order they were added. */
  emit<K extends EventName>(name: K, event: ClientEvents[K]): void {
    const set = this.handlers.get(name);
    if (!set || set.size === 0) return;
    for (const handler of [...set]) {
      try {
        handler(event);
      } catch (exc) {
        if (name !== "error" && this.handlers.get("error")?.size) this.emit("error", exc as Error);
        else console.error("edgeim-sdk: an event handler threw", exc);
      }
    }
  }
}
