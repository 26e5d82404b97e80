/**
 * A CouchDB for tests, the benchmark and the e2e substitute: express-pouchdb (in memory) behind a
 * front with CouchDB 3.4's HTTP semantics (couchdb-front.ts), in a child process. It applies the
 * ini files it is given the way CouchDB does (require_valid_user, default_security, admins).
 * Without admins it is in "admin party" mode, like CouchDB without any admin.
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { loadIni, settingsFromIni } from "./couchdb-front";

export interface TestCouch {
  url: string;
  port: number;
  stop(): Promise<void>;
}

export interface CouchOptions {
  /** ini files or directories of them, in CouchDB's load order. */
  ini?: string[];
  /** Admins added as the official image's entrypoint adds COUCHDB_USER. */
  admins?: Record<string, string>;
}

// From couchmail/test and from couchmail/dist (the bundled benchmark) alike.
const CHILD = resolve(__dirname, "..", "test", "couchdb-child.ts");

export async function startCouch(port = 0, host = "127.0.0.1", opts: CouchOptions = {}): Promise<TestCouch> {
  const settings = settingsFromIni(loadIni(opts.ini ?? []), opts.admins);
  const tsx = pathToFileURL(require.resolve("tsx")).href;
  const child = spawn(process.execPath, ["--import", tsx, CHILD, String(port), host], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  // Over IPC, not argv: the settings hold the admins' passwords.
  child.send(settings);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const p = await new Promise<number>((resolvePort, reject) => {
    child.once("message", (m: { port: number }) => resolvePort(m.port));
    child.once("exit", (code) => reject(new Error(`test CouchDB exited (${code})`)));
  });
  child.disconnect();
  return {
    url: `http://${host}:${p}`,
    port: p,
    async stop() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
