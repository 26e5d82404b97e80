import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import * as admin from "../src/admin";
import { Couch, CouchConfig } from "../src/couch";
import { createLogger } from "../src/log";
import { NetstringDecoder, encodeNetstring } from "../src/netstring";
import { Running, serve } from "../src/serve";
import type { ServeConfig } from "../src/serveconfig";
import { TestCouch, startCouch } from "./couchdb";

/** Collects log lines so tests can assert on them (and keep test output quiet). */
export class LogSink extends Writable {
  lines: string[] = [];
  _write(chunk: Buffer, _enc: string, cb: () => void): void {
    this.lines.push(...chunk.toString().split("\n").filter(Boolean));
    cb();
  }
}

export async function seed(couch: Couch): Promise<void> {
  await admin.init(couch);
  await admin.domainAdd(couch, "example.org");
  await admin.userAdd(couch, "alice@example.org", "correct horse", { quotaBytes: 1024 ** 3 });
  await admin.userAdd(couch, "bob@example.org", "battery staple", {});
  await admin.aliasAdd(couch, "info@example.org", ["alice@example.org", "bob@example.org"]);
  await admin.aliasAdd(couch, "@example.org", ["alice@example.org"]);
  await admin.sievePut(couch, "alice@example.org", "default", 'require ["fileinto", "mailbox"];\nfileinto :create "Alice";\n');
}

export interface Stack {
  couchServer: TestCouch | null;
  couch: Couch;
  running: Running;
  dir: string;
  log: LogSink;
  socketmapPort: number;
  httpUrl: string;
  dictPath: string;
  socketmapPath: string;
  stop(): Promise<void>;
}

export async function startStack(
  opts: { seed?: boolean; couchUp?: boolean; serve?: Partial<ServeConfig> | ((dir: string) => Partial<ServeConfig>) } = {},
): Promise<Stack> {
  const couchServer = opts.couchUp === false ? null : await startCouch();
  // A down datastore: a port nobody listens on.
  const url = couchServer?.url ?? `http://127.0.0.1:${await freePort()}`;
  const couchCfg: CouchConfig = { url, db: "mail" };
  const couch = new Couch(couchCfg);
  if (couchServer && opts.seed !== false) await seed(couch);
  const dir = mkdtempSync(join(tmpdir(), "couchmail-test-"));
  const log = new LogSink();
  const cfg: ServeConfig = {
    couch: couchCfg,
    socketmap: [
      { kind: "tcp", host: "127.0.0.1", port: 0 },
      { kind: "unix", path: join(dir, "socketmap.sock") },
    ],
    dict: [{ kind: "unix", path: join(dir, "dict.sock") }],
    http: [{ kind: "tcp", host: "127.0.0.1", port: 0 }],
    socketMode: 0o660,
    mailHome: "/var/mail/vhosts",
    cache: { heartbeatMs: 200, staleAfterMs: 1000, backoffMinMs: 50, backoffMaxMs: 200 },
    ...(typeof opts.serve === "function" ? opts.serve(dir) : opts.serve),
  };
  let running: Running;
  try {
    running = await serve(cfg, createLogger("debug", log));
  } catch (e) {
    await couchServer?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const tcp = running.addresses.socketmap.find((a) => !a.startsWith("unix:"))!;
  return {
    couchServer,
    couch,
    running,
    dir,
    log,
    socketmapPort: Number(tcp.split(":").pop()),
    httpUrl: `http://${running.addresses.http[0]}`,
    dictPath: join(dir, "dict.sock"),
    socketmapPath: join(dir, "socketmap.sock"),
    async stop() {
      await running.close();
      await couchServer?.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export async function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > until) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A persistent socketmap connection; replies are read strictly in order. */
export class SocketmapClient {
  private decoder = new NetstringDecoder(1_000_000);
  private replies: string[] = [];
  private waiters: ((s: string) => void)[] = [];
  closed = false;
  constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on("data", (c) => {
      for (const f of this.decoder.push(c).frames) {
        const w = this.waiters.shift();
        if (w) w(f.toString());
        else this.replies.push(f.toString());
      }
    });
    sock.on("close", () => (this.closed = true));
  }
  static connect(target: number | string): Promise<SocketmapClient> {
    return new Promise((resolve, reject) => {
      const s = typeof target === "number" ? net.connect(target, "127.0.0.1") : net.connect(target);
      s.once("connect", () => resolve(new SocketmapClient(s)));
      s.once("error", reject);
    });
  }
  next(): Promise<string> {
    const r = this.replies.shift();
    return r !== undefined ? Promise.resolve(r) : new Promise((res) => this.waiters.push(res));
  }
  async query(map: string, key: string): Promise<string> {
    this.sock.write(encodeNetstring(`${map} ${key}`));
    return this.next();
  }
  close(): void {
    this.sock.destroy();
  }
}

/** Sends raw bytes on a fresh connection and returns everything until the server closes (or ms pass). */
export function rawExchange(target: number | string, data: Buffer | string, ms = 2000): Promise<{ data: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const s = typeof target === "number" ? net.connect(target, "127.0.0.1") : net.connect(target);
    let out = "";
    const t = setTimeout(() => {
      s.destroy();
      resolve({ data: out, closedByServer: false });
    }, ms);
    s.on("data", (c) => (out += c.toString("latin1")));
    s.on("error", () => undefined);
    s.on("close", () => {
      clearTimeout(t);
      resolve({ data: out, closedByServer: true });
    });
    s.write(data);
  });
}

/** Sends dict lines on one connection and collects n reply lines. */
export function dictExchange(path: string, lines: string[], replies: number, ms = 2000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    let buf = "";
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`got only ${JSON.stringify(buf)}`));
    }, ms);
    s.on("data", (c) => {
      buf += c.toString();
      const got = buf.split("\n").slice(0, -1);
      if (got.length >= replies) {
        clearTimeout(t);
        s.destroy();
        resolve(got);
      }
    });
    s.on("error", reject);
    s.write(lines.map((l) => l + "\n").join(""));
  });
}
