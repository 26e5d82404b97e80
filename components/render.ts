// Helpers shared by the pure config renderers (Postfix, Dovecot, OpenDKIM).
import { createHash } from "crypto";
import { absPath, cidr, dnsbl, email, fqdn, hostname, port } from "./config/checks";

/**
 * One port a daemon listens on: the contract between its renderer (which configures the port), its pod (container
 * and Service ports, NetworkPolicy) and the edge (public ports).
 */
export interface Listener {
    /** The container port's name, also the Service port's: at most 15 characters. */
    name: string;
    port: number;
    /** The port the world connects to through the edge (the hostport edge binds it on the node). */
    public?: number;
    /** A twin that requires a PROXY header, served when the edge sends one; only the edge may connect to it. */
    proxy?: { name: string; port: number };
    /** The workloads (`app.kubernetes.io/name`) that may connect; omitted: any source. */
    clients?: readonly string[];
    /** The pod's container (or native sidecar) that serves it; omitted: the workload's first container. */
    container?: string;
}

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

/** Applies one of the program's rules (config/checks.ts) to a renderer setting; throws naming the field. */
function checked<T>(field: string, value: T, rule: (value: T) => string | undefined): T {
    const problem = rule(value);
    if (problem) throw new Error(`${field}: ${problem}, got ${JSON.stringify(value)}`);
    return value;
}

export function checkHostname(field: string, value: string, needDot = true): string {
    return checked(field, value, needDot ? fqdn : hostname);
}

export function checkPort(field: string, value: number): number {
    return checked(field, value, port);
}

export function checkAbsPath(field: string, value: string): string {
    return checked(field, value, absPath);
}

export function checkCidr(field: string, value: string): string {
    return checked(field, value, cidr);
}

export function checkEmail(field: string, value: string): string {
    return checked(field, value, email);
}

export function checkDnsbl(field: string, value: string): string {
    return checked(field, value, dnsbl);
}

/**
 * A service endpoint in Postfix/Dovecot notation: `inet:HOST:PORT` or `unix:/abs/path`.
 * Returns the parts so renderers can emit either syntax.
 */
export type Endpoint = { kind: "inet"; host: string; port: number } | { kind: "unix"; path: string };

export function parseEndpoint(field: string, value: string): Endpoint {
    const inet = typeof value === "string" ? /^inet:([a-z0-9.-]+):(\d+)$/.exec(value) : null;
    if (inet && hostname(inet[1]) === undefined) return { kind: "inet", host: inet[1], port: checkPort(field, Number(inet[2])) };
    const unix = typeof value === "string" ? /^unix:(\/.*)$/.exec(value) : null;
    if (unix) return { kind: "unix", path: checkAbsPath(field, unix[1]) };
    return invalid(field, "inet:HOST:PORT or unix:/absolute/path", value);
}
