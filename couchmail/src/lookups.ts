import { Snapshot } from "./cache";
import { EMPTY_SIEVE_ID, MailboxDoc, NO_LOGIN, ROLE_LOCALS, ROLES_ID, baseAddress, dovecotSize, sieveId, splitAddress } from "./model";

export type Result = { kind: "ok"; value: string } | { kind: "notfound" } | { kind: "temp"; why: string };
const NOTFOUND = { kind: "notfound" } as const;
const ok = (value: string): Result => ({ kind: "ok", value });
const temp = (why: string): Result => ({ kind: "temp", why });

/** Any key touching a malformed document is answered "temporary failure": never guess. */
function brokenAny(s: Snapshot, ids: string[]): boolean {
  if (s.broken.size === 0) return false;
  return ids.some((id) => s.broken.has(id));
}
const BROKEN = { kind: "temp", why: "malformed document in the datastore" } as const;

/** virtual_mailbox_domains */
export function lookupDomain(s: Snapshot, key: string): Result {
  const d = key.toLowerCase();
  if (brokenAny(s, [`domain:${d}`])) return BROKEN;
  return s.domains.has(d) ? ok(d) : NOTFOUND;
}

/** virtual_mailbox_maps: `user+tag@dom` is the mailbox `user@dom` (Postfix sends only the full key). */
export function lookupMailbox(s: Snapshot, key: string): Result {
  const base = baseAddress(key);
  if (!base) return NOTFOUND;
  if (brokenAny(s, [`mailbox:${base}`])) return BROKEN;
  return s.mailboxes.has(base) ? ok(base) : NOTFOUND;
}

/**
 * Where a served domain's role address (postmaster@, abuse@) goes when nobody made an alias or
 * mailbox for it: the postmaster target `couchmail sync` stored. Null when the address is no role
 * address of a served domain. Until the sync has run there is no target yet: a temporary failure,
 * so senders retry instead of bouncing their mail (DMARC reports included).
 */
function roleTarget(s: Snapshot, base: string): Result | null {
  const at = base.lastIndexOf("@");
  const local = base.slice(0, at);
  const domain = base.slice(at + 1);
  if (!(ROLE_LOCALS as readonly string[]).includes(local)) return null;
  if (brokenAny(s, [`domain:${domain}`, ROLES_ID])) return BROKEN;
  if (!s.domains.has(domain)) return null;
  if (!s.roles) return temp("no postmaster target for role addresses yet (couchmail sync has not run)");
  // The target is this very address and it has no mailbox (removed since the sync made one): nowhere to deliver.
  if (s.roles.postmaster === base) return temp(`${base} is the postmaster target but has no mailbox (run couchmail sync or user add)`);
  return ok(s.roles.postmaster);
}

/**
 * virtual_alias_maps. Order: alias of the base address; a mailbox of that name means
 * "no rewrite" (NOTFOUND, so Postfix goes on to virtual_mailbox_maps with the
 * extension intact); then a role address's postmaster target; then the domain's catch-all.
 */
export function lookupAlias(s: Snapshot, key: string): Result {
  const base = baseAddress(key);
  if (!base) return NOTFOUND;
  const domain = base.slice(base.lastIndexOf("@") + 1);
  if (brokenAny(s, [`alias:${base}`, `mailbox:${base}`, `alias:@${domain}`])) return BROKEN;
  const alias = s.aliases.get(base);
  if (alias) return ok(alias.targets.join(","));
  if (s.mailboxes.has(base)) return NOTFOUND;
  const role = roleTarget(s, base);
  if (role) return role;
  const catchAll = s.aliases.get(`@${domain}`);
  return catchAll ? ok(catchAll.targets.join(",")) : NOTFOUND;
}

/**
 * smtpd_sender_login_maps: who may send as this address. A mailbox owns itself; an
 * alias is owned by the enabled local mailboxes it points to. Catch-alls grant nothing.
 */
export function lookupSender(s: Snapshot, key: string): Result {
  const base = baseAddress(key);
  if (!base) return NOTFOUND;
  if (brokenAny(s, [`mailbox:${base}`, `alias:${base}`])) return BROKEN;
  const owners: string[] = [];
  const self = s.mailboxes.get(base);
  if (self?.enabled) owners.push(base);
  // A role address nobody claimed is owned like an alias to its postmaster target.
  const role = !self && !s.aliases.has(base) ? roleTarget(s, base) : null;
  if (role?.kind === "temp") return role;
  const targets = role?.kind === "ok" ? [role.value] : (s.aliases.get(base)?.targets ?? []);
  for (const t of targets) {
    if (brokenAny(s, [`mailbox:${t}`])) return BROKEN;
    if (s.mailboxes.get(t)?.enabled && !owners.includes(t)) owners.push(t);
  }
  return owners.length ? ok(owners.join(",")) : NOTFOUND;
}

export const socketmapMaps: Record<string, (s: Snapshot, key: string) => Result> = {
  domains: lookupDomain,
  mailboxes: lookupMailbox,
  aliases: lookupAlias,
  senders: lookupSender,
};

export interface DovecotOptions {
  mailHome: string; // homes are <mailHome>/<domain>/<local>
}

function userFields(m: MailboxDoc, opts: DovecotOptions): Record<string, string> {
  const p = splitAddress(m.address)!;
  const f: Record<string, string> = { home: `${opts.mailHome}/${p.domain}/${p.local}` };
  if (m.quota_bytes) f.quota_storage_size = dovecotSize(m.quota_bytes);
  return f;
}

export type AuthResult = { kind: "ok"; fields: Record<string, string> } | { kind: "notfound" } | { kind: "temp"; why: string };

/**
 * passdb: hash + prefetched userdb fields. Disabled mailboxes and those without a password yet cannot
 * log in. Login names are exact (no +ext).
 */
export function passdb(s: Snapshot, user: string, opts: DovecotOptions): AuthResult {
  const u = user.toLowerCase();
  if (brokenAny(s, [`mailbox:${u}`])) return BROKEN;
  const m = s.mailboxes.get(u);
  if (!m || !m.enabled || m.password === NO_LOGIN) return NOTFOUND;
  const fields: Record<string, string> = { user: m.address, password: m.password };
  for (const [k, v] of Object.entries(userFields(m, opts))) fields[`userdb_${k}`] = v;
  return { kind: "ok", fields };
}

/** userdb (LMTP delivery, doveadm): disabled mailboxes still receive mail. */
export function userdb(s: Snapshot, user: string, opts: DovecotOptions): AuthResult {
  const base = baseAddress(user);
  if (!base) return NOTFOUND;
  if (brokenAny(s, [`mailbox:${base}`])) return BROKEN;
  const m = s.mailboxes.get(base);
  if (!m) return NOTFOUND;
  return { kind: "ok", fields: { user: m.address, ...userFields(m, opts) } };
}

/**
 * Pigeonhole's dict sieve storage. `priv/sieve/name/<name>` → an id; `priv/sieve/data/<id>`
 * → the script. A known user always gets a script (an empty one when none is stored):
 * Dovecot 2.4.1 fails the whole delivery with 451 on a "not found".
 */
export function sieveLookup(s: Snapshot, user: string, key: string): Result {
  const u = user.toLowerCase();
  if (!u) return temp("no user given");
  if (brokenAny(s, [`mailbox:${u}`])) return BROKEN;
  const m = s.mailboxes.get(u);
  let match: RegExpExecArray | null;
  if ((match = /^priv\/sieve\/name\/(.*)$/s.exec(key))) {
    if (!m) return NOTFOUND;
    const script = m.sieve?.[match[1]];
    return ok(script ? sieveId(script) : EMPTY_SIEVE_ID);
  }
  if ((match = /^priv\/sieve\/data\/(.*)$/s.exec(key))) {
    if (!m) return NOTFOUND;
    if (match[1] === EMPTY_SIEVE_ID) return ok("");
    for (const script of Object.values(m.sieve ?? {})) if (sieveId(script) === match[1]) return ok(script.script);
    // The script changed between the two lookups: let Dovecot retry.
    return temp("sieve script changed; retry");
  }
  return temp("unsupported dict key");
}
