import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { Couch, CouchError } from "./couch";
import { AliasDoc, DomainDoc, MailboxDoc, NO_LOGIN, ROLES_ID, RolesDoc, docId, invalidReason, splitAddress } from "./model";

/** An error the CLI reports as is, with its exit code. */
export class AdminError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}
export const EXIT = { failure: 1, usage: 2, notFound: 3, conflict: 4 } as const;

const usage = (m: string) => new AdminError(m, EXIT.usage);
const notFound = (m: string) => new AdminError(m, EXIT.notFound);
const conflict = (m: string) => new AdminError(m, EXIT.conflict);

function id(type: "domain" | "mailbox" | "alias" | "settings", key: string): string {
  try {
    return docId(type, key);
  } catch (e) {
    throw usage((e as Error).message);
  }
}

export const BCRYPT_COST = 12;

const BLF_CRYPT = "{BLF-CRYPT}";

/** The rule every new password follows, from the CLI and the password endpoint alike. Throws a usage error saying which. */
export function checkNewPassword(password: string): void {
  if (password.length < 8) throw usage("password too short (at least 8 characters)");
  if (Buffer.byteLength(password) > 72) throw usage("password too long (bcrypt uses at most 72 bytes)");
}

/** `{BLF-CRYPT}` hash Dovecot verifies. Passwords never leave this function except hashed. */
export async function hashPassword(password: string): Promise<string> {
  checkNewPassword(password);
  return BLF_CRYPT + (await bcrypt.hash(password, BCRYPT_COST));
}

/**
 * Whether password matches a stored hash; null for a scheme couchmail cannot verify ({ARGON2ID}, which
 * Dovecot verifies but Node 20 has no implementation of). bcryptjs's async compare yields to the event
 * loop between rounds, so lookups keep being answered meanwhile.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean | null> {
  if (!stored.startsWith(BLF_CRYPT)) return null;
  return bcrypt.compare(password, stored.slice(BLF_CRYPT.length));
}

/** A hash of a random string nobody kept: verifying against it costs what a real verification costs. */
const NOBODYS_HASH = "$2b$12$IZ1NszEc.uT0SZ4kcp9i8u0yuV2fPB705VWWhHavWsjIgotew/tXa";

/** Spends one verification's time, so that "no such user" takes as long to answer as "wrong password". */
async function verifyNothing(password: string): Promise<void> {
  await bcrypt.compare(password, NOBODYS_HASH);
}

/**
 * A user changes their own password, proving the current one. The current password is verified against
 * the document as CouchDB holds it (never the lookup cache), and the new hash is written with that
 * document's revision: a concurrent writer makes the write conflict, and the retry verifies again against
 * what the writer left (a password changed meanwhile refuses the change). Unknown, disabled and
 * login-less mailboxes are refused after the same work as a wrong password. The document is written
 * whole or not at all; a datastore error is thrown.
 */
export async function changeOwnPassword(couch: Couch, address: string, current: string, next: string): Promise<"changed" | "refused" | "unverifiable"> {
  checkNewPassword(next);
  const p = splitAddress(address);
  let mailboxId: string | null = null;
  try {
    mailboxId = p ? docId("mailbox", `${p.local}@${p.domain}`) : null;
  } catch {
    mailboxId = null;
  }
  if (mailboxId === null) {
    await verifyNothing(current);
    return "refused";
  }
  let outcome: "changed" | "refused" | "unverifiable" = "refused";
  let hash: string | undefined;
  await update<MailboxDoc>(couch, mailboxId, async (cur) => {
    if (!cur || !cur.enabled || cur.password === NO_LOGIN) {
      await verifyNothing(current);
      outcome = "refused";
      return null;
    }
    const verified = await verifyPassword(current, cur.password);
    if (verified !== true) {
      outcome = verified === null ? "unverifiable" : "refused";
      return null;
    }
    hash ??= await hashPassword(next);
    outcome = "changed";
    return { ...cur, password: hash };
  });
  return outcome;
}

type Update<T> = T | null | "delete";

/** Read-modify-write with CouchDB's optimistic locking, retried on a conflicting writer (fn sees the fresh document each time). */
async function update<T extends { _id: string }>(couch: Couch, docIdStr: string, fn: (doc: T | null) => Update<T> | Promise<Update<T>>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const cur = await couch.get<T & { _rev: string }>(docIdStr);
    const next = await fn(cur);
    try {
      if (next === "delete") {
        if (cur) await couch.remove(docIdStr, cur._rev);
      } else if (next !== null) {
        await couch.put(cur ? { ...next, _rev: cur._rev } : next);
      }
      return;
    } catch (e) {
      if (e instanceof CouchError && e.status === 409 && attempt < 3) continue;
      if (e instanceof CouchError && e.status === 403) throw new AdminError(`rejected by the datastore: ${e.message}`, EXIT.usage);
      throw e;
    }
  }
}

async function requireDomain(couch: Couch, domain: string): Promise<void> {
  if (!(await couch.get(id("domain", domain)))) throw notFound(`domain ${domain} does not exist (add it with: couchmail domain add ${domain})`);
}

function addressParts(address: string): { address: string; domain: string } {
  const p = splitAddress(address);
  if (!p) throw usage(`${JSON.stringify(address)} is not an address (local@domain)`);
  return { address: `${p.local}@${p.domain}`, domain: p.domain };
}

export async function init(couch: Couch): Promise<"created" | "updated" | "unchanged"> {
  await couch.ensureDatabase();
  return couch.installDesign();
}

// ---- the datastore as the stack's config says
export interface SyncReport {
  design: "created" | "updated" | "unchanged";
  /** Listed domains this run created, and those that were there already. */
  created: string[];
  present: string[];
  /** Domains in the datastore the list does not name: kept unless deleteUnlisted. */
  unlisted: string[];
  removed: { domain: string; mailboxes: number; aliases: number }[];
  postmaster: {
    address: string;
    roles: "created" | "updated" | "unchanged";
    /** What receives the postmaster's own mail: a mailbox this run made (no login yet), the user's mailbox or alias, or another server. */
    delivery: "mailbox created" | "mailbox" | "alias" | "elsewhere";
  };
}

/**
 * Makes the datastore match the stack's config, and is safe to run any number of times: installs or
 * upgrades the design document, creates the listed domains that are missing, stores the postmaster
 * target of every domain's role addresses, and gives the postmaster address a mailbox (without a
 * login until `user add`/`user passwd` sets a password) when it is one of ours and has neither
 * mailbox nor alias. Domains the list does not name are reported and kept — with their mailboxes —
 * unless deleteUnlisted says otherwise (the mail itself stays on Dovecot's volume).
 */
export async function sync(couch: Couch, opts: { domains: string[]; postmaster: string; deleteUnlisted?: boolean }): Promise<SyncReport> {
  const listed = [...new Set(opts.domains.map((d) => d.trim().toLowerCase()))];
  if (listed.length === 0 || listed.includes(""))
    throw usage(`--domains must list at least one domain, comma-separated (got ${JSON.stringify(opts.domains.join(","))})`);
  for (const d of listed) id("domain", d);
  const postmaster = opts.postmaster.toLowerCase();
  const roles: RolesDoc = { _id: ROLES_ID, type: "settings", postmaster };
  const why = invalidReason(roles);
  if (why !== null) throw usage(`--postmaster ${JSON.stringify(opts.postmaster)} is not an address: ${why}`);

  const design = await init(couch);
  const existing = await domainList(couch);
  const created = listed.filter((d) => !existing.includes(d));
  for (const d of created) await domainAdd(couch, d).catch(ignoreConflict);
  const unlisted = existing.filter((d) => !listed.includes(d));
  const removed: SyncReport["removed"] = [];
  if (opts.deleteUnlisted) {
    for (const d of unlisted) {
      const aliases = await aliasList(couch, d);
      const mailboxes = await mailboxList(couch, d);
      for (const a of aliases) await update<AliasDoc>(couch, id("alias", a.source), () => "delete");
      for (const m of mailboxes) await update<MailboxDoc>(couch, m._id, () => "delete");
      await update<DomainDoc>(couch, id("domain", d), () => "delete");
      removed.push({ domain: d, mailboxes: mailboxes.length, aliases: aliases.length });
    }
  }

  // The postmaster's mailbox first, so its role addresses never point at an address with nowhere to deliver.
  const target = splitAddress(postmaster)!;
  let delivery: SyncReport["postmaster"]["delivery"] = "elsewhere";
  if (await couch.get(id("domain", target.domain))) {
    if (await couch.get(id("alias", postmaster))) delivery = "alias";
    else if (await couch.get(id("mailbox", postmaster))) delivery = "mailbox";
    else {
      await update<MailboxDoc>(couch, id("mailbox", postmaster), (cur) =>
        cur ? null : { _id: id("mailbox", postmaster), type: "mailbox", address: postmaster, password: NO_LOGIN, enabled: true },
      );
      delivery = "mailbox created";
    }
  }
  let rolesResult: SyncReport["postmaster"]["roles"] = "unchanged";
  await update<RolesDoc>(couch, ROLES_ID, (cur) => {
    if (cur?.postmaster === postmaster) return null;
    rolesResult = cur ? "updated" : "created";
    return roles;
  });
  return {
    design,
    created,
    present: listed.filter((d) => !created.includes(d)),
    unlisted: unlisted.filter((d) => !removed.some((r) => r.domain === d)),
    removed,
    postmaster: { address: postmaster, roles: rolesResult, delivery },
  };
}

/** Another sync (or a user) created it meanwhile: what we wanted is there. */
function ignoreConflict(e: unknown): void {
  if (!(e instanceof AdminError && e.exitCode === EXIT.conflict)) throw e;
}

// ---- domains
export async function domainAdd(couch: Couch, name: string): Promise<void> {
  const d = name.toLowerCase();
  const _id = id("domain", d);
  await update<DomainDoc>(couch, _id, (cur) => {
    if (cur) throw conflict(`domain ${d} already exists`);
    return { _id, type: "domain", name: d };
  });
}

export async function domainRm(couch: Couch, name: string): Promise<void> {
  const d = name.toLowerCase();
  const _id = id("domain", d);
  const users = (await mailboxList(couch, d)).length;
  const aliases = (await aliasList(couch, d)).length;
  if (users || aliases) throw conflict(`domain ${d} still has ${users} mailbox(es) and ${aliases} alias(es); remove them first`);
  await update<DomainDoc>(couch, _id, (cur) => {
    if (!cur) throw notFound(`domain ${d} does not exist`);
    return "delete";
  });
}

export async function domainList(couch: Couch): Promise<string[]> {
  return (await couch.byPrefix<DomainDoc>("domain:")).map((d) => d.name);
}

// ---- mailboxes
export interface UserInfo {
  address: string;
  enabled: boolean;
  /** False until a password is set (the postmaster mailbox `sync` creates). */
  login: boolean;
  quota_bytes: number | null;
  sieve: string[];
}
const info = (m: MailboxDoc): UserInfo => ({
  address: m.address,
  enabled: m.enabled,
  login: m.password !== NO_LOGIN,
  quota_bytes: m.quota_bytes ?? null,
  sieve: Object.keys(m.sieve ?? {}),
});

/**
 * Adds a mailbox, or gives its password to one that has none yet (the postmaster's, which
 * `sync` creates so its mail is kept): "added" or "password set".
 */
export async function userAdd(
  couch: Couch,
  address: string,
  password: string,
  opts: { quotaBytes?: number; disabled?: boolean },
): Promise<"added" | "password set"> {
  const p = addressParts(address);
  const _id = id("mailbox", p.address);
  await requireDomain(couch, p.domain);
  const hash = await hashPassword(password);
  let result: "added" | "password set" = "added";
  await update<MailboxDoc>(couch, _id, (cur) => {
    if (cur && cur.password !== NO_LOGIN) throw conflict(`mailbox ${p.address} already exists`);
    result = cur ? "password set" : "added";
    const doc: MailboxDoc = { ...(cur ?? {}), _id, type: "mailbox", address: p.address, password: hash, enabled: !opts.disabled };
    if (opts.quotaBytes) doc.quota_bytes = opts.quotaBytes;
    return doc;
  });
  return result;
}

async function mailboxUpdate(couch: Couch, address: string, fn: (m: MailboxDoc) => MailboxDoc): Promise<void> {
  const p = addressParts(address);
  await update<MailboxDoc>(couch, id("mailbox", p.address), (cur) => {
    if (!cur) throw notFound(`mailbox ${p.address} does not exist`);
    return fn(cur);
  });
}

export async function userPasswd(couch: Couch, address: string, password: string): Promise<void> {
  const hash = await hashPassword(password);
  await mailboxUpdate(couch, address, (m) => ({ ...m, password: hash }));
}

export async function userSet(couch: Couch, address: string, opts: { quotaBytes?: number | null; enabled?: boolean }): Promise<void> {
  await mailboxUpdate(couch, address, (m) => {
    const next = { ...m };
    if (opts.enabled !== undefined) next.enabled = opts.enabled;
    if (opts.quotaBytes === null || opts.quotaBytes === 0) delete next.quota_bytes;
    else if (opts.quotaBytes !== undefined) next.quota_bytes = opts.quotaBytes;
    return next;
  });
}

export async function userRm(couch: Couch, address: string): Promise<string[]> {
  const p = addressParts(address);
  await update<MailboxDoc>(couch, id("mailbox", p.address), (cur) => {
    if (!cur) throw notFound(`mailbox ${p.address} does not exist`);
    return "delete";
  });
  // Aliases still pointing here are reported, not silently rewritten.
  return (await aliasList(couch, p.domain)).filter((a) => a.targets.includes(p.address)).map((a) => a.source);
}

async function mailboxList(couch: Couch, domain?: string): Promise<MailboxDoc[]> {
  const all = await couch.byPrefix<MailboxDoc>("mailbox:");
  return domain ? all.filter((m) => m.address.endsWith(`@${domain.toLowerCase()}`)) : all;
}

export async function userList(couch: Couch, domain?: string): Promise<UserInfo[]> {
  return (await mailboxList(couch, domain)).map(info);
}

// ---- aliases
function aliasSource(source: string): { source: string; domain: string } {
  const s = source.toLowerCase();
  if (s.startsWith("@")) return { source: s, domain: s.slice(1) };
  const p = addressParts(s);
  return { source: p.address, domain: p.domain };
}

export async function aliasAdd(couch: Couch, source: string, targets: string[]): Promise<string[]> {
  const s = aliasSource(source);
  const _id = id("alias", s.source);
  await requireDomain(couch, s.domain);
  const add = targets.map((t) => addressParts(t).address);
  let result: string[] = [];
  await update<AliasDoc>(couch, _id, (cur) => {
    const merged = [...(cur?.targets ?? [])];
    for (const t of add) if (!merged.includes(t)) merged.push(t);
    result = merged;
    return { _id, type: "alias", source: s.source, targets: merged };
  });
  return result;
}

export async function aliasRm(couch: Couch, source: string, targets: string[]): Promise<void> {
  const s = aliasSource(source);
  const drop = targets.map((t) => addressParts(t).address);
  await update<AliasDoc>(couch, id("alias", s.source), (cur) => {
    if (!cur) throw notFound(`alias ${s.source} does not exist`);
    if (drop.length === 0) return "delete";
    const missing = drop.filter((t) => !cur.targets.includes(t));
    if (missing.length) throw notFound(`alias ${s.source} has no target ${missing.join(", ")}`);
    const left = cur.targets.filter((t) => !drop.includes(t));
    return left.length ? { ...cur, targets: left } : "delete";
  });
}

export async function aliasList(couch: Couch, domain?: string): Promise<{ source: string; targets: string[] }[]> {
  const all = await couch.byPrefix<AliasDoc>("alias:");
  const d = domain?.toLowerCase();
  return all.filter((a) => !d || a.source.endsWith(`@${d}`)).map((a) => ({ source: a.source, targets: a.targets }));
}

// ---- sieve
const SIEVE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
function sieveName(name: string): string {
  if (!SIEVE_NAME.test(name)) throw usage(`bad sieve script name ${JSON.stringify(name)} (lowercase letters, digits, . _ -)`);
  return name;
}

/** Compiles the script with Pigeonhole's sievec when it is installed; returns whether it ran. */
export function checkSieve(script: string, sievec = "sievec"): boolean {
  const dir = mkdtempSync(join(tmpdir(), "couchmail-sieve-"));
  try {
    const file = join(dir, "script.sieve");
    writeFileSync(file, script);
    const r = spawnSync(sievec, [file, join(dir, "script.svbin")], { encoding: "utf8", timeout: 30_000 });
    if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") return false;
    if (r.error) throw new AdminError(`sievec failed to run: ${r.error.message}`, EXIT.failure);
    if (r.status !== 0) {
      const out = `${r.stdout}${r.stderr}`.split(file).join("script").trim();
      throw usage(`sieve script does not compile:\n${out}`);
    }
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function sievePut(couch: Couch, address: string, name: string, script: string): Promise<number> {
  sieveName(name);
  if (Buffer.byteLength(script) > 1048576) throw usage("sieve script larger than 1 MiB");
  let rev = 0;
  await mailboxUpdate(couch, address, (m) => {
    rev = (m.sieve?.[name]?.rev ?? 0) + 1;
    return { ...m, sieve: { ...(m.sieve ?? {}), [name]: { script, rev } } };
  });
  return rev;
}

async function mailbox(couch: Couch, address: string): Promise<MailboxDoc> {
  const p = addressParts(address);
  const m = await couch.get<MailboxDoc>(id("mailbox", p.address));
  if (!m) throw notFound(`mailbox ${p.address} does not exist`);
  return m;
}

export async function sieveGet(couch: Couch, address: string, name: string): Promise<string> {
  const m = await mailbox(couch, address);
  const s = m.sieve?.[sieveName(name)];
  if (!s) throw notFound(`mailbox ${m.address} has no sieve script ${name}`);
  return s.script;
}

export async function sieveRm(couch: Couch, address: string, name: string): Promise<void> {
  sieveName(name);
  await mailboxUpdate(couch, address, (m) => {
    if (!m.sieve?.[name]) throw notFound(`mailbox ${m.address} has no sieve script ${name}`);
    const sieve = { ...m.sieve };
    delete sieve[name];
    const next: MailboxDoc = { ...m, sieve };
    if (Object.keys(sieve).length === 0) delete next.sieve;
    return next;
  });
}

export async function sieveList(couch: Couch, address: string): Promise<{ name: string; rev: number; bytes: number }[]> {
  const m = await mailbox(couch, address);
  return Object.entries(m.sieve ?? {}).map(([name, s]) => ({ name, rev: s.rev, bytes: Buffer.byteLength(s.script) }));
}
