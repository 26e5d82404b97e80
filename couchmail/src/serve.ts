import { chmodSync, chownSync, lstatSync, readFileSync, unlinkSync } from "node:fs";
import net from "node:net";
import type { Server } from "node:net";
import { Cache, CacheOptions } from "./cache";
import { Couch, CouchConfig, CouchError, envOrFile } from "./couch";
import { createDictServer } from "./dict";
import { createHttpServer } from "./http";
import type { Logger } from "./log";
import { Metrics } from "./metrics";
import { AuthPolicy } from "./policy";
import { createSocketmapServer } from "./socketmap";

export type Listen = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export interface ServeConfig {
  couch: CouchConfig;
  socketmap: Listen[];
  dict: Listen[];
  http: Listen[];
  socketMode: number;
  socketGroup?: string;
  mailHome: string;
  httpToken?: string;
  cache: CacheOptions;
}

/**
 * Parses `HOST:PORT`, `[V6]:PORT` or `unix:/path`. A wildcard address is refused: lookups
 * (and the passdb's hashes) are served on loopback or a pod-internal address only.
 */
export function parseListen(spec: string, allowTcp = true): Listen {
  const s = spec.trim();
  if (s.startsWith("unix:") || s.startsWith("/")) {
    const path = s.startsWith("unix:") ? s.slice(5) : s;
    if (!path.startsWith("/")) throw new Error(`listen ${spec}: a unix socket needs an absolute path`);
    return { kind: "unix", path };
  }
  if (!allowTcp) throw new Error(`listen ${spec}: only unix:/path is allowed here`);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(s);
  if (!m) throw new Error(`listen ${spec}: expected IP:PORT, [IPv6]:PORT or unix:/path`);
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (!net.isIP(host)) throw new Error(`listen ${spec}: ${host} is not an IP address`);
  if (host === "0.0.0.0" || /^[0:]+$/.test(host)) throw new Error(`listen ${spec}: refusing a wildcard address; give loopback or the pod's own IP`);
  if (port < 1 || port > 65535) throw new Error(`listen ${spec}: bad port`);
  return { kind: "tcp", host, port };
}

function listList(v: string | undefined, allowTcp = true): Listen[] {
  return (v ?? "")
    .split(",")
    .filter((x) => x.trim())
    .map((x) => parseListen(x, allowTcp));
}

export function serveConfigFromEnv(couch: CouchConfig, env: NodeJS.ProcessEnv = process.env): ServeConfig {
  const mode = parseInt(env.COUCHMAIL_SOCKET_MODE || "0660", 8);
  if (!(mode >= 0 && mode <= 0o770) || mode & 0o007) throw new Error("COUCHMAIL_SOCKET_MODE must be owner/group only (e.g. 0660 or 0600)");
  const seconds = (name: string, dflt: number) => {
    const v = Number(env[name] ?? dflt);
    if (!(v > 0)) throw new Error(`${name} must be a positive number of seconds`);
    return v * 1000;
  };
  return {
    couch,
    socketmap: listList(env.COUCHMAIL_SOCKETMAP_LISTEN ?? "127.0.0.1:7000"),
    dict: listList(env.COUCHMAIL_DICT_LISTEN, false),
    http: listList(env.COUCHMAIL_HTTP_LISTEN ?? "127.0.0.1:8080"),
    socketMode: mode,
    socketGroup: env.COUCHMAIL_SOCKET_GROUP || undefined,
    mailHome: (env.COUCHMAIL_MAIL_HOME || "/var/mail/vhosts").replace(/\/+$/, ""),
    httpToken: envOrFile(env, "COUCHMAIL_HTTP_TOKEN"),
    cache: {
      staleAfterMs: seconds("COUCHMAIL_STALE_AFTER", 60),
      heartbeatMs: seconds("COUCHMAIL_FEED_HEARTBEAT", 10),
    },
  };
}

function groupId(group: string): number {
  if (/^[0-9]+$/.test(group)) return Number(group);
  for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === group && f[2]) return Number(f[2]);
  }
  throw new Error(`unknown group ${group}`);
}

async function listen(server: Server, l: Listen, cfg: ServeConfig): Promise<string> {
  if (l.kind === "tcp") {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(l.port, l.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    const a = server.address() as net.AddressInfo;
    return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }
  try {
    // Replace a stale socket from a previous run, never any other kind of file.
    if (lstatSync(l.path).isSocket()) unlinkSync(l.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  // The socket is born owner-only (no window where others could connect), then opened to the group.
  const old = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(l.path, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(old);
  }
  if (cfg.socketGroup !== undefined) chownSync(l.path, -1, groupId(cfg.socketGroup));
  chmodSync(l.path, cfg.socketMode);
  return `unix:${l.path}`;
}

export interface Running {
  cache: Cache;
  metrics: Metrics;
  addresses: { socketmap: string[]; dict: string[]; http: string[] };
  close(): Promise<void>;
}

export async function serve(cfg: ServeConfig, log: Logger): Promise<Running> {
  const couch = new Couch(cfg.couch);
  const cache = new Cache(couch, log, cfg.cache);
  // One policy for every HTTP listener: limits hold per address and account, whichever port asked.
  const policy = new AuthPolicy();
  const metrics = new Metrics(cache, policy);
  const servers: Server[] = [];
  const addresses: Running["addresses"] = { socketmap: [], dict: [], http: [] };
  const sockets = new Set<net.Socket>();
  const track = (s: Server) => {
    servers.push(s);
    s.on("connection", (c: net.Socket) => {
      sockets.add(c);
      c.on("close", () => sockets.delete(c));
    });
  };
  try {
    for (const l of cfg.socketmap) {
      const s = createSocketmapServer(cache, metrics, log);
      track(s);
      addresses.socketmap.push(await listen(s, l, cfg));
    }
    for (const l of cfg.dict) {
      const s = createDictServer(cache, metrics, log);
      track(s);
      addresses.dict.push(await listen(s, l, cfg));
    }
    for (const l of cfg.http) {
      const s = createHttpServer(cache, metrics, log, { mailHome: cfg.mailHome, token: cfg.httpToken, policy });
      track(s);
      addresses.http.push(await listen(s, l, cfg));
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  log.info({ event: "listening", ...addresses, couchdb: couch.location }, "couchmail serving");

  // Listeners answer TEMP until the first load. A fresh CouchDB has no database yet, and the
  // feed cannot load before it exists: create it and the design document, retrying while
  // CouchDB is unreachable. Best effort (the account may lack admin rights): never blocks lookups.
  let closing = false;
  void (async () => {
    for (let delay = 500; !closing; delay = Math.min(delay * 2, 30_000)) {
      try {
        await couch.ensureDatabase();
        const what = await couch.installDesign();
        log.info({ event: "design_doc", result: what }, "database and design document checked");
        return;
      } catch (e) {
        const denied = e instanceof CouchError && (e.status === 401 || e.status === 403);
        log.warn({ event: "design_doc_failed", err: String(e instanceof Error ? e.message : e), retry_ms: denied ? null : delay }, "could not create the database or install the design document");
        if (denied) return;
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
  })();
  const feed = cache.run();

  return {
    cache,
    metrics,
    addresses,
    async close() {
      closing = true;
      cache.stop();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))).concat(feed.then(() => undefined), destroyAll(sockets)));
    },
  };
}

async function destroyAll(sockets: Set<net.Socket>): Promise<void> {
  // Let replies already written flush, then drop idle persistent connections.
  await new Promise((r) => setTimeout(r, 50));
  for (const c of sockets) c.destroy();
}
