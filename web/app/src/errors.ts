/** Failures in people's words: the server's error codes (docs/protocol.md section 12) as
 * sentences, with the name of the person concerned when the action had one. The code and
 * the server's own text stay available to a curious user (the notice's tooltip). */
import { DisconnectedError, FileTransferError, RequestTimeoutError, ServerError } from "edgeim-sdk";

type Sentence = (who: string) => string;

const SENTENCES: Record<number, Sentence> = {
  1003: () => "The server could not read that request. Reload the page and try again.",
  1004: () => "That is too long to send in one message.",
  2000: () => "You are signed out. Log in again.",
  2001: () => "Wrong username or password.",
  2002: () => "Your session has expired. Log in again.",
  2003: () => "Your session has ended. Log in again.",
  2004: () => "That username is taken. Choose another one.",
  2006: () => "This account is disabled. Contact the server's operator.",
  2007: () => "This account was deleted.",
  3000: (who) => (who ? `${who} does not exist.` : "There is no such user."),
  3001: () => "You are not allowed to do that here.",
  3002: () => "That can't be done.",
  3003: (who) => `${who || "This person"} is not your friend yet. Send a friend request first.`,
  3004: (who) => `${who || "This person"} does not accept messages or requests from you.`,
  3005: (who) => (who ? `Already done: you and ${who} are friends already.` : "That was done already."),
  3006: () => "That no longer exists.",
  3007: () => "You can't write in this group right now: you are muted.",
  3008: () => "The group is full.",
  3009: () => "Too late to recall that message.",
  3010: () => "That file is too large for this server.",
  3011: () => "This server does not accept that kind of file.",
  3012: (who) => `${who || "They"} are already in a call.`,
  3013: () => "The search took too long. Try a longer word.",
  3014: () => "You have used all your file space on this server.",
  3020: () => "Too late to edit that message.",
  3021: () => "The message you replied to is not in this conversation any more.",
  3022: () => "That message can't be edited: only text messages that were not recalled can.",
  3023: () => "That message has as many reactions as it can take. Take one of yours back, or pick an emoji already on it.",
  3024: () => "That message was recalled, so it can't be reacted to, forwarded or pinned.",
  3025: () => "That is too many messages to forward at once. Forward fewer at a time.",
  3026: () => "That kind of message (a call) can't be forwarded.",
  3027: () => "This chat has as many pinned messages as it can hold. Unpin one first.",
  3030: (who) => `${who || "Someone you asked for"} has too many group invitations waiting, or you have sent too many that are unanswered. Nothing was changed.`,
  4000: () => "Too many requests at once. Wait a moment and try again.",
  4001: () => "Too many devices are signed in to this account. Log out of one first.",
  5000: () => "Something went wrong on the server. Try again.",
  5001: () => "The server is busy. Try again in a moment.",
};

/** A user-facing sentence for a failure; `who` is the display name of the person the
 * action was about, if any. */
export function sentence(error: unknown, who = ""): string {
  if (error instanceof ServerError) {
    const say = SENTENCES[error.code];
    return say ? say(who) : "The server refused that.";
  }
  if (error instanceof DisconnectedError || error instanceof RequestTimeoutError) {
    return "Can't reach the server right now. Check your connection and try again.";
  }
  if (error instanceof FileTransferError) return "The file could not be transferred. Try again.";
  const text = error instanceof Error ? error.message : String(error);
  if (/not connected|network|websocket|fetch/i.test(text)) {
    return "Can't reach the server right now. Check your connection and try again.";
  }
  return "Something went wrong. Try again.";
}

/** The failure as the server named it, for the notice's tooltip. */
export function technical(error: unknown): string {
  if (error instanceof ServerError) return `${error.name} (${error.code}): ${error.message}`;
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

export function codeOf(error: unknown): number {
  return error instanceof ServerError ? error.code : 0;
}
