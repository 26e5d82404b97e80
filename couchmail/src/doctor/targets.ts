import type { Target } from "./conn";

/** The mail host's public ports (the edge's) and their standard numbers. */
export const PORTS = { smtp: 25, submission: 587, submissions: 465, imaps: 993 } as const;
export type PortName = keyof typeof PORTS;

/** The usual DNSBLs. */
export const DEFAULT_DNSBLS = ["zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"];

/** `HOST[:PORT]` / `[IPv6]:PORT` → target; the port defaults to `defaultPort`. */
export function parseTarget(text: string, defaultPort: number, what: string): Target {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  const port = m?.[2] ? Number(m[2]) : defaultPort;
  if (!m || !m[1] || !Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what} "${text}": give HOST, HOST:PORT or [IPv6]:PORT`);
  return { host: m[1], port };
}
