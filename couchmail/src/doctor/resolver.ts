import { promises as dnsPromises } from "node:dns";
import { isIP } from "node:net";

/** What one DNS question got: records, "no such name", "no records of that type", or a failure to ask. */
export type Answer<T> = { kind: "records"; records: T[] } | { kind: "nxdomain" } | { kind: "nodata" } | { kind: "error"; message: string };

export interface DoctorResolver {
  txt(name: string): Promise<Answer<string>>;
  mx(name: string): Promise<Answer<{ exchange: string; priority: number }>>;
  a(name: string): Promise<Answer<string>>;
  ptr(address: string): Promise<Answer<string>>;
  /** The same resolver in the shape mailauth takes (dns.promises.resolve's). */
  forMailauth: (name: string, rrtype: string) => Promise<string[][] | string[]>;
  /** The servers asked, for the report ("system" when none was given). */
  servers: string;
}

/**
 * A resolver over the given servers (`IP` or `IP:PORT`; the system's when empty) with a per-question timeout.
 * c-ares reports NXDOMAIN as ENOTFOUND and an empty answer as ENODATA (nodejs.org/api/dns.html#error-codes).
 */
export function createResolver(servers: string[], timeoutMs: number): DoctorResolver {
  const resolver = new dnsPromises.Resolver({ timeout: timeoutMs, tries: 2 });
  if (servers.length) {
    for (const s of servers) {
      const host = s.startsWith("[") ? s.slice(1, s.indexOf("]")) : s.split(":").length === 2 ? s.split(":")[0] : s;
      if (!isIP(host)) throw new Error(`--resolver ${s}: give an IP address, optionally with :PORT`);
    }
    resolver.setServers(servers);
  }
  const ask = async <T>(query: () => Promise<T[]>): Promise<Answer<T>> => {
    try {
      return { kind: "records", records: await query() };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOTFOUND") return { kind: "nxdomain" };
      if (code === "ENODATA") return { kind: "nodata" };
      return { kind: "error", message: `${code ?? "error"}: ${(e as Error).message}` };
    }
  };
  return {
    txt: (name) => ask(async () => (await resolver.resolveTxt(name)).map((parts) => parts.join(""))),
    mx: (name) => ask(() => resolver.resolveMx(name)),
    a: (name) => ask(() => resolver.resolve4(name)),
    ptr: (address) => ask(() => resolver.reverse(address)),
    forMailauth: (name, rrtype) => resolver.resolve(name, rrtype) as Promise<string[][] | string[]>,
    servers: servers.length ? servers.join(", ") : "system",
  };
}

/** How an answer that holds no records reads in a report. */
export function describeEmpty(answer: Answer<unknown>): string {
  if (answer.kind === "nxdomain") return "no such name (NXDOMAIN)";
  if (answer.kind === "nodata") return "no record of that type";
  if (answer.kind === "error") return `lookup failed (${answer.message})`;
  return "no records";
}
