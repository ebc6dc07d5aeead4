// Test helper: a real `im serve` as a child process on free ports, in a private data dir.
// IM_BIN names the binary (default <repo>/.venv/bin/im).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const IM_BIN = process.env.IM_BIN || join(repo, ".venv/bin/im");

/** What every test node gets (as tests/harness.py): cheap password hashes, no login or send
 * budgets that many quick logins from 127.0.0.1 would hit, and strangers may message. */
const TEST_ENV = {
  IM_PASSWORD_MEMORY_KIB: "256",
  IM_PASSWORD_TIME_COST: "1",
  IM_LOGIN_RATE: "1000000",
  IM_LOGIN_BURST: "1000000",
  IM_LOGIN_BACKLOG: "100000",
  IM_USER_SEND_RATE: "1000000",
  IM_USER_SEND_BURST: "1000000",
  IM_USER_SEND_BYTES_RATE: "1000000000",
  IM_USER_SEND_BYTES_BURST: "1000000000",
  IM_STRANGERS_MAY_SEND: "1",
  // the suites put strangers in groups; consent.test.mjs starts its node with the default
  IM_GROUP_ADD_DEFAULT: "anyone",
  IM_PRESENCE_DEBOUNCE: "0.05",
  IM_LOG_LEVEL: "warning",
};

export class Server {
  /** @param {Record<string, string>} env settings on top of TEST_ENV */
  constructor(env = {}) {
    this.dataDir = mkdtempSync(join(tmpdir(), "edgeim-sdk-test-"));
    // the same secret across restarts, so tokens stay valid
    this.env = { ...process.env, ...TEST_ENV, IM_TOKEN_SECRET: "sdk-test-" + randomBytes(24).toString("hex"), ...env };
    this.port = 0;
    this.httpPort = 0;
    this.url = "";
    this.httpUrl = "";
    this.proc = null;
    this.stderr = "";
  }

  /** Start (again, on the same ports once they are known); resolves when it listens. */
  async start() {
    const args = ["serve", "--port", String(this.port), "--http-port", String(this.httpPort), "--data-dir", this.dataDir];
    for (let attempt = 0; ; attempt++) {
      try {
        await this.spawn(args);
        return this;
      } catch (exc) {
        // a restart can race the old process's socket release: retry briefly
        if (attempt >= 50 || this.port === 0) throw exc;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  spawn(args) {
    return new Promise((resolve, reject) => {
      const proc = spawn(IM_BIN, args, { env: this.env, stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      const onExit = (code) => reject(new Error(`im serve exited (${code}) before listening: ${err.slice(-2000)}`));
      proc.once("exit", onExit);
      proc.once("error", reject);
      proc.stderr.on("data", (chunk) => (err += chunk));
      proc.stdout.on("data", (chunk) => {
        out += chunk;
        const m = /listening on (ws:\/\/\S+) and (http:\/\/\S+)/.exec(out);
        if (!m || this.proc === proc) return;
        proc.off("exit", onExit);
        this.proc = proc;
        this.url = m[1];
        this.httpUrl = m[2];
        this.port = Number(new URL(this.url).port);
        this.httpPort = Number(new URL(this.httpUrl).port);
        proc.stderr.removeAllListeners("data");
        proc.stderr.resume(); // keep draining: a full pipe would block the node
        resolve();
      });
    });
  }

  /** Stop the process (SIGTERM: drain; SIGKILL: a crash) and wait for it to exit. */
  async stop(signal = "SIGTERM") {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill(signal);
      const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    }
  }

  /** Stop for good and remove the data dir. */
  async dispose() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
