// Helpers shared by the pure config renderers (Postfix, Dovecot, OpenDKIM).
import { createHash } from "crypto";

/** Rendered configuration: file name → content. */
export type RenderedFiles = Record<string, string>;

/** A stable hash of rendered files, for a ConfigMap annotation that rolls pods on change. */
export function contentHash(files: RenderedFiles): string {
  const h = createHash("sha256");
  for (const name of Object.keys(files).sort()) {
    h.update(name).update("\0").update(files[name]).update("\0");
  }
  return h.digest("hex").slice(0, 16);
}

/**
 * TLS 1.2 suites of Mozilla's "intermediate" server configuration (wiki.mozilla.org/Security/Server_Side_TLS): forward
 * secret ECDHE with AEAD only — no anonymous (aNULL), no RSA key exchange, no CBC. TLS 1.3 suites are all acceptable.
 */
export const INTERMEDIATE_TLS12_CIPHERS = [
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** Throws an Error that names the offending setting and what it accepts. */
export function invalid(field: string, allowed: string, got: unknown): never {
  throw new Error(`${field}: expected ${allowed}, got ${JSON.stringify(got)}`);
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function checkHostname(field: string, value: string, needDot = true): string {
  if (typeof value !== "string" || !HOSTNAME.test(value) || (needDot && !value.includes("."))) {
    invalid(field, needDot ? "a lower-case fully qualified domain name" : "a lower-case host name", value);
  }
  return value;
}

export function checkPort(field: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 65535) invalid(field, "an integer port 1-65535", value);
  return value;
}

export function checkAbsPath(field: string, value: string): string {
  if (typeof value !== "string" || !/^\/[A-Za-z0-9._/-]*$/.test(value) || value.split("/").includes("..")) {
    invalid(field, "an absolute path of [A-Za-z0-9._/-] without '..'", value);
  }
  return value;
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9a-f:]+$/i;

/** An IPv4 or IPv6 network in CIDR form (IPv6 without brackets). */
export function checkCidr(field: string, value: string): string {
  const m = typeof value === "string" ? /^([^/]+)\/(\d{1,3})$/.exec(value) : null;
  const ok = m !== null && (IPV4.test(m[1]) ? Number(m[2]) <= 32 : IPV6.test(m[1]) && m[1].includes(":") && Number(m[2]) <= 128);
  if (!ok) invalid(field, "a CIDR network such as 10.244.0.0/16 or fd00::/8", value);
  return value;
}

/**
 * A service endpoint in Postfix/Dovecot notation: `inet:HOST:PORT` or `unix:/abs/path`.
 * Returns the parts so renderers can emit either syntax.
 */
export type Endpoint = { kind: "inet"; host: string; port: number } | { kind: "unix"; path: string };

export function parseEndpoint(field: string, value: string): Endpoint {
  const inet = typeof value === "string" ? /^inet:([a-z0-9.-]+):(\d+)$/.exec(value) : null;
  if (inet && HOSTNAME.test(inet[1])) return { kind: "inet", host: inet[1], port: checkPort(field, Number(inet[2])) };
  const unix = typeof value === "string" ? /^unix:(\/.*)$/.exec(value) : null;
  if (unix) return { kind: "unix", path: checkAbsPath(field, unix[1]) };
  return invalid(field, "inet:HOST:PORT or unix:/absolute/path", value);
}
