/** Where the app finds its node's WebSocket.
 *
 * A node serving the app on its HTTP port answers `GET ./web-config.json` with
 * `{"ws": "ws://HOST:PORT/ws"}`. Without it (a dev server, a plain static server) the
 * node's default layout is assumed: the WebSocket port is the HTTP port - 1. */
export async function webSocketUrl(): Promise<string> {
  try {
    const answer = await fetch("./web-config.json", { cache: "no-store" });
    if (answer.ok) {
      const config = (await answer.json()) as { ws?: unknown };
      if (typeof config.ws === "string" && config.ws) return config.ws;
    }
  } catch {
    // no config served: fall through to the default layout
  }
  return fallbackUrl(window.location);
}

export function fallbackUrl(location: { protocol: string; hostname: string; port: string }): string {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const httpPort = location.port ? Number(location.port) : location.protocol === "https:" ? 443 : 80;
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  return `${scheme}://${host}:${httpPort - 1}/ws`;
}
