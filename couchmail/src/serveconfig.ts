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
  /** `GET /metrics` only, for the scraper (off when absent). */
  metrics?: Listen;
  /** The password-change endpoint for Roundcube's httpapi driver (off when absent). */
  password?: PasswordListenConfig;
}

export interface PasswordListenConfig {
  listen: Listen;
  /** PEM files, re-read every reloadMs so a renewed certificate is served without a restart. */
  tls?: { certFile: string; keyFile: string; reloadMs: number };
  /** When set, requests must carry "Authorization: Bearer <token>". */
  token?: string;
}

/** What a listener accepts: TCP and/or unix sockets; the wildcard only where nothing secret is served without a check. */
export interface ListenRules {
  tcp: boolean;
  unix: boolean;
  wildcard: boolean;
}
const LOOKUP_RULES: ListenRules = { tcp: true, unix: true, wildcard: false };

/**
 * Parses `HOST:PORT`, `[V6]:PORT` or `unix:/path`. A wildcard address is refused by default: lookups
 * (and the passdb's hashes) are served on loopback or a pod-internal address only.
 */
export function parseListen(spec: string, rules: ListenRules = LOOKUP_RULES): Listen {
  const s = spec.trim();
  if (s.startsWith("unix:") || s.startsWith("/")) {
    if (!rules.unix) throw new Error(`listen ${spec}: expected IP:PORT or [IPv6]:PORT (no unix socket here)`);
    const path = s.startsWith("unix:") ? s.slice(5) : s;
    if (!path.startsWith("/")) throw new Error(`listen ${spec}: a unix socket needs an absolute path`);
    return { kind: "unix", path };
  }
  if (!rules.tcp) throw new Error(`listen ${spec}: only unix:/path is allowed here`);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):([0-9]{1,5})$/.exec(s);
  if (!m) throw new Error(`listen ${spec}: expected IP:PORT, [IPv6]:PORT${rules.unix ? " or unix:/path" : ""}`);
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (!net.isIP(host)) throw new Error(`listen ${spec}: ${host} is not an IP address`);
  if (!rules.wildcard && isWildcard(host)) throw new Error(`listen ${spec}: refusing a wildcard address; give loopback or the pod's own IP`);
  if (port < 1 || port > 65535) throw new Error(`listen ${spec}: bad port`);
  return { kind: "tcp", host, port };
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || /^[0:]+$/.test(host);
}

function isLoopback(host: string): boolean {
  return /^127\./.test(host) || host === "::1";
}

function listList(v: string | undefined, rules: ListenRules = LOOKUP_RULES): Listen[] {
  return (v ?? "")
    .split(",")
    .filter((x) => x.trim())
    .map((x) => parseListen(x, rules));
}

/** One TCP address that other pods reach (the wildcard allowed), or undefined when the variable is unset or empty. */
function outsideListen(env: NodeJS.ProcessEnv, name: string): Listen | undefined {
  const v = (env[name] ?? "").trim();
  if (!v) return undefined;
  if (v.includes(",")) throw new Error(`${name}: one address only (IP:PORT or [IPv6]:PORT), got ${JSON.stringify(v)}`);
  try {
    return parseListen(v, { tcp: true, unix: false, wildcard: true });
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}`);
  }
}

/**
 * COUCHMAIL_PASSWORD_LISTEN and its TLS files and token. Passwords cross the pod network only inside TLS:
 * without COUCHMAIL_PASSWORD_TLS_CERT and _KEY the listener must be a loopback address.
 */
function passwordListen(env: NodeJS.ProcessEnv): PasswordListenConfig | undefined {
  const listen = outsideListen(env, "COUCHMAIL_PASSWORD_LISTEN");
  if (!listen || listen.kind !== "tcp") return undefined;
  const certFile = env.COUCHMAIL_PASSWORD_TLS_CERT || undefined;
  const keyFile = env.COUCHMAIL_PASSWORD_TLS_KEY || undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new Error("COUCHMAIL_PASSWORD_TLS_CERT and COUCHMAIL_PASSWORD_TLS_KEY go together: set both PEM file paths or neither");
  }
  if (!certFile && !isLoopback(listen.host)) {
    throw new Error(
      `COUCHMAIL_PASSWORD_LISTEN ${listen.host}:${listen.port} is not loopback: set COUCHMAIL_PASSWORD_TLS_CERT and COUCHMAIL_PASSWORD_TLS_KEY (passwords never cross the network in clear)`,
    );
  }
  return {
    listen,
    tls: certFile && keyFile ? { certFile, keyFile, reloadMs: 60_000 } : undefined,
    token: envOrFile(env, "COUCHMAIL_PASSWORD_TOKEN"),
  };
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
    dict: listList(env.COUCHMAIL_DICT_LISTEN, { tcp: false, unix: true, wildcard: false }),
    http: listList(env.COUCHMAIL_HTTP_LISTEN ?? "127.0.0.1:8080"),
    socketMode: mode,
    socketGroup: env.COUCHMAIL_SOCKET_GROUP || undefined,
    mailHome: (env.COUCHMAIL_MAIL_HOME || "/var/mail/vhosts").replace(/\/+$/, ""),
    httpToken: envOrFile(env, "COUCHMAIL_HTTP_TOKEN"),
    cache: {
      staleAfterMs: seconds("COUCHMAIL_STALE_AFTER", 60),
      heartbeatMs: seconds("COUCHMAIL_FEED_HEARTBEAT", 10),
    },
    metrics: outsideListen(env, "COUCHMAIL_METRICS_LISTEN"),
    password: passwordListen(env),
  };
}
