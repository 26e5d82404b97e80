import { createHash } from "node:crypto";
import vm from "node:vm";
import { validateDocUpdate } from "./validate";

export interface DomainDoc {
  _id: string;
  _rev?: string;
  type: "domain";
  name: string;
}
export interface SieveScript {
  script: string;
  rev: number;
}
export interface MailboxDoc {
  _id: string;
  _rev?: string;
  type: "mailbox";
  address: string;
  password: string;
  enabled: boolean;
  quota_bytes?: number;
  sieve?: Record<string, SieveScript>;
}
export interface AliasDoc {
  _id: string;
  _rev?: string;
  type: "alias";
  source: string;
  targets: string[];
}
/** Where mail to every served domain's role addresses goes unless the user made an alias or mailbox for one. */
export interface RolesDoc {
  _id: typeof ROLES_ID;
  _rev?: string;
  type: "settings";
  postmaster: string;
}
export const ROLES_ID = "settings:roles";
/**
 * Role addresses every served domain must accept: postmaster (RFC 5321 §4.5.1) and abuse (RFC 2142 §2).
 * The DMARC and TLS-RPT report address the program publishes is the postmaster target itself.
 */
export const ROLE_LOCALS = ["postmaster", "abuse"] as const;
/** The password of a mailbox nobody can log in to (yet): it receives mail; `user add`/`user passwd` give it one. */
export const NO_LOGIN = "!";
export type MailDoc = DomainDoc | MailboxDoc | AliasDoc | RolesDoc;
export type DocType = MailDoc["type"];

export const DESIGN_ID = "_design/couchmail";

/**
 * validate_doc_update as CouchDB wants it: an anonymous `function (newDoc, oldDoc, userCtx, secObj) {…}`.
 * `fn.toString()` gives a named declaration, which CouchDB's QuickJS engine evaluates to undefined
 * (couch_quickjs's js_evalcx runs the source as a script; only `function (` becomes an expression),
 * so every later write would fail with 500 "compilation_error: Expression does not eval to a
 * function". SpiderMonkey accepts both; the anonymous form is what CouchDB documents.
 */
export function validateDocUpdateSource(): string {
  const named = validateDocUpdate.toString();
  const anonymous = named.replace(/^function\s+validateDocUpdate\s*\(/, "function (");
  if (anonymous === named) throw new Error("validateDocUpdate's source does not start with its declaration; cannot make it anonymous");
  assertSelfContained(anonymous);
  return anonymous;
}

/**
 * The source as transpiled must not lean on anything outside itself: a transpiler that keeps
 * function names (esbuild's keepNames, which tsx turns on) inserts calls to a `__name` helper
 * that CouchDB does not have, and every write would then fail with a ReferenceError. Run it
 * once in an empty context on a valid and an invalid document to find out here instead.
 */
export function assertSelfContained(source: string): void {
  const fn = vm.runInNewContext(`(${source})`) as (doc: unknown) => void;
  const probes = [
    { _id: "domain:example.org", type: "domain", name: "example.org" },
    { _id: "domain:x", type: "mailbox" },
  ];
  for (const doc of probes) {
    try {
      fn(doc);
    } catch (e) {
      if ((e as { forbidden?: unknown })?.forbidden === undefined) {
        throw new Error(
          `validate_doc_update's transpiled source is not self-contained (${String(e)}); run couchmail from its bundle (npm run build), not through a transpiler that keeps names`,
        );
      }
    }
  }
}

/** The design document: its validate_doc_update is the same code the cache runs. */
export function designDoc(): { _id: string; language: string; validate_doc_update: string } {
  return { _id: DESIGN_ID, language: "javascript", validate_doc_update: validateDocUpdateSource() };
}

/** Returns the reason a document is malformed, or null if it is well-formed. */
export function invalidReason(doc: unknown): string | null {
  try {
    validateDocUpdate(doc);
    return null;
  } catch (e) {
    const forbidden = (e as { forbidden?: unknown })?.forbidden;
    return typeof forbidden === "string" ? forbidden : String(e);
  }
}

/**
 * Document ids are `<type>:<key>` where the key passed the same grammar the validator
 * enforces: a type prefix means an id can never start with "_", and the grammar has no
 * "/", "%", NUL or "..", so a key can never name another CouchDB path.
 */
export function docId(type: DocType, key: string): string {
  const probe =
    type === "settings"
      ? { _id: `settings:${key}`, type, postmaster: "postmaster@example.org" }
      : type === "domain"
        ? { _id: `domain:${key}`, type, name: key }
        : type === "alias"
          ? { _id: `alias:${key}`, type, source: key, targets: ["x@example.org"] }
          : {
              _id: `mailbox:${key}`,
              type,
              address: key,
              enabled: true,
              password: "{BLF-CRYPT}$2b$10$" + "a".repeat(53),
            };
  const why = invalidReason(probe);
  if (why !== null) throw new Error(`invalid ${type} key ${JSON.stringify(key)}: ${why}`);
  return probe._id;
}

/** Splits an id into type and key, or null when it is not one of ours. */
export function parseDocId(id: string): { type: DocType; key: string } | null {
  const m = /^(domain|mailbox|alias|settings):(.+)$/.exec(id);
  return m ? { type: m[1] as DocType, key: m[2] } : null;
}

/** Lowercases and splits an address; null when it has no "@" with text on both sides. */
export function splitAddress(addr: string): { local: string; domain: string } | null {
  const a = addr.toLowerCase();
  const at = a.lastIndexOf("@");
  if (at < 1 || at === a.length - 1) return null;
  return { local: a.slice(0, at), domain: a.slice(at + 1) };
}

/** `user+tag@dom` → `user@dom` (the subaddress separator is "+"). */
export function baseAddress(addr: string): string | null {
  const p = splitAddress(addr);
  if (!p) return null;
  const plus = p.local.indexOf("+");
  const local = plus >= 0 ? p.local.slice(0, plus) : p.local;
  return local ? `${local}@${p.domain}` : null;
}

/** Changes whenever the script text changes, and with every revision: it keys Pigeonhole's compiled binary. */
export function sieveId(s: SieveScript): string {
  const h = createHash("sha256").update(s.script).digest("hex").slice(0, 16);
  return `r${s.rev}-${h}`;
}
export const EMPTY_SIEVE_ID = "empty";

/** Dovecot size: exact binary units when possible, else bytes. */
export function dovecotSize(bytes: number): string {
  const units: [number, string][] = [
    [1024 ** 4, "T"],
    [1024 ** 3, "G"],
    [1024 ** 2, "M"],
    [1024, "k"],
  ];
  for (const [n, u] of units) if (bytes % n === 0) return `${bytes / n}${u}`;
  return `${bytes}B`;
}

/** Parses "500M", "1G", "1048576" into bytes; throws on anything else. */
export function parseSize(s: string): number {
  const m = /^([0-9]{1,15})([kmgt]?)$/i.exec(s.trim());
  if (!m) throw new Error(`invalid size ${JSON.stringify(s)} (use e.g. 500M, 2G or a byte count)`);
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as "" | "k" | "m" | "g" | "t"];
  return Number(m[1]) * mult;
}
