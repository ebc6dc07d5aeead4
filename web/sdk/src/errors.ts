/** The errors the SDK's promises reject with. */
import { errorName } from "./protocol.js";

/** The server answered a request with an ERROR frame. Branch on `code` (docs/protocol.md section 12). */
export class ServerError extends Error {
  /** The error code, e.g. 3006. */
  readonly code: number;
  /** The code's name, e.g. "NOT_FOUND" (the contract's `name`: not the class name). */
  override readonly name: string;

  constructor(code: number, message: string) {
    super(message);
    this.code = code;
    this.name = errorName(code);
  }
}

/** The connection closed (or was never open) before the request was answered. */
export class DisconnectedError extends Error {
  override name = "DisconnectedError";
  /** The WebSocket close code, when the server sent one. */
  readonly closeCode: number | null;

  constructor(message: string, closeCode: number | null = null) {
    super(message);
    this.closeCode = closeCode;
  }
}

/** No answer within the client's requestTimeoutMs. */
export class RequestTimeoutError extends Error {
  override name = "RequestTimeoutError";
}

/** The HTTP server refused a file's upload or download: `status` and its text. */
export class FileTransferError extends Error {
  override name = "FileTransferError";
  readonly status: number;

  constructor(status: number, reason: string) {
    super(`${status}: ${reason}`);
    this.status = status;
  }
}
