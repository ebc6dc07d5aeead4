/** What the app learns from its node: where the WebSocket is, and how long after sending
 * a message its sender may recall it and edit it (ms; the node's `recall_window` and
 * `edit_window`). */
export interface WebConfig {
  url: string;
  recallWindowMs: number;
  editWindowMs: number;
}

/** The protocol's default recall window (docs/protocol.md, 3009 RECALL_EXPIRED). */
const DEFAULT_RECALL_WINDOW_MS = 120_000;
/** The protocol's default edit window (docs/protocol.md, 3020 EDIT_EXPIRED). */
const DEFAULT_EDIT_WINDOW_MS = 48 * 3600 * 1000;

/** Where the app finds its node's WebSocket.
 *
 * A node serving the app on its HTTP port answers `GET ./web-config.json` without
 * echoing anything of the request (a Host header could be anyone's): `{"ws": URL}` when
 * its operator set the URL, `{"path": "/ws"}` for a path on the page's own host and port
 * (behind a proxy), or `{"port": 8765, "path": "/ws"}` for the page's host on the node's
 * WebSocket port. Without it (a dev server, a plain static server) the node's default
 * layout is assumed: the WebSocket port is the HTTP port - 1. */
export async function webConfig(): Promise<WebConfig> {
  try {
    const answer = await fetch("./web-config.json", { cache: "no-store" });
    if (answer.ok) {
      const config: unknown = await answer.json();
      return {
        url: configuredUrl(config, window.location) ?? fallbackUrl(window.location),
        recallWindowMs: windowOf(config, "recall_window", DEFAULT_RECALL_WINDOW_MS),
        editWindowMs: windowOf(config, "edit_window", DEFAULT_EDIT_WINDOW_MS),
      };
    }
  } catch {
    // no config served: fall through to the default layout
  }
  return { url: fallbackUrl(window.location), recallWindowMs: DEFAULT_RECALL_WINDOW_MS, editWindowMs: DEFAULT_EDIT_WINDOW_MS };
}

/** A window the config names in seconds, in ms (the default when it names none). */
function windowOf(config: unknown, name: string, fallback: number): number {
  const seconds = typeof config === "object" && config !== null ? (config as Record<string, unknown>)[name] : undefined;
  return typeof seconds === "number" && seconds >= 0 ? seconds * 1000 : fallback;
}

/** What the page loaded from: the parts of `window.location` used here. */
export interface Place {
  protocol: string;
  hostname: string;
  host: string;
  port: string;
}

/** The WebSocket URL a node's web-config.json names, on the page's own host unless the
 * operator set a whole URL; undefined if it names none. */
export function configuredUrl(config: unknown, location: Place): string | undefined {
  if (typeof config !== "object" || config === null) return undefined;
  const { ws, port, path } = config as { ws?: unknown; port?: unknown; path?: unknown };
  if (typeof ws === "string" && ws) return ws;
  if (typeof path !== "string" || !path.startsWith("/")) return undefined;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  if (typeof port === "number" && Number.isInteger(port) && port > 0 && port < 65536) {
    return `${scheme}://${bracketed(location.hostname)}:${port}${path}`;
  }
  return `${scheme}://${location.host}${path}`;
}

export function fallbackUrl(location: Place): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const httpPort = location.port ? Number(location.port) : location.protocol === "https:" ? 443 : 80;
  return `${scheme}://${bracketed(location.hostname)}:${httpPort - 1}/ws`;
}

function bracketed(hostname: string): string {
  return hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
}
