import net from "node:net";
import type { CacheOptions } from "./cache";
import { CouchConfig, envOrFile } from "./couch";

export type Listen = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

/** What `couchmail serve` runs with: where to listen and how, read from the environment. */
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
