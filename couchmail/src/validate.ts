/**
 * The datastore's validate_doc_update. It is installed into CouchDB as source text
 * (made anonymous by model.ts's validateDocUpdateSource), so it must stay self-contained:
 * no imports, no helpers from outside its body, nothing CouchDB's JavaScript engines lack.
 * The cache runs the same function on every document it loads, so a document that
 * slipped in unchecked never reaches a lookup.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- documents are untyped JSON until this function has checked them */
export function validateDocUpdate(newDoc: any, _oldDoc?: any, _userCtx?: any, _secObj?: any): void {
  function fail(msg: string): never {
    // CouchDB's contract: a validation function refuses a write by throwing `{ forbidden: message }` (HTTP 403)
    // (https://docs.couchdb.org/en/stable/ddocs/ddocs.html#validate-document-update-functions).
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- an Error would be a 500, not a refusal
    throw { forbidden: msg };
  }
  const DOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;
  // Our own local parts: no "+" (it is the subaddress separator) and no "..".
  const LOCAL = /^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9_-])?$/;
  // Alias targets may live elsewhere and carry an extension.
  const TARGET_LOCAL = /^[a-z0-9_=+-](?:[a-z0-9._=+-]{0,62}[a-z0-9_=+-])?$/;
  const SIEVE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
  const NO_LOGIN = "!";
  const HASH = /^(\{BLF-CRYPT\}\$2[aby]\$(1[0-9]|2[0-9]|3[01])\$[./A-Za-z0-9]{53}|\{ARGON2ID\}\$argon2id\$[A-Za-z0-9$=,+/.-]{20,300})$/;
  function isDomain(s: unknown): boolean {
    return typeof s === "string" && DOMAIN.test(s);
  }
  function isAddress(s: unknown, local: RegExp): boolean {
    if (typeof s !== "string" || s.length > 254) return false;
    const at = s.lastIndexOf("@");
    if (at < 1) return false;
    const l = s.slice(0, at);
    return local.test(l) && l.indexOf("..") < 0 && isDomain(s.slice(at + 1));
  }
  function onlyKeys(doc: any, allowed: string[]): void {
    for (const k in doc) {
      if (allowed.indexOf(k) < 0 && k !== "_id" && k !== "_rev" && k !== "_revisions") fail("unexpected field " + k);
    }
  }

  if (newDoc._deleted === true) return;
  const id = newDoc._id;
  if (typeof id !== "string") fail("missing _id");
  if (id.indexOf("_design/") === 0) return;
  const colon = id.indexOf(":");
  const type = colon > 0 ? id.slice(0, colon) : "";
  const key = id.slice(colon + 1);
  if (newDoc.type !== type) fail("type must match the id prefix");

  if (type === "domain") {
    onlyKeys(newDoc, ["type", "name"]);
    if (!isDomain(newDoc.name) || key !== newDoc.name) fail("domain: name must be a lowercase domain equal to the id");
  } else if (type === "mailbox") {
    onlyKeys(newDoc, ["type", "address", "password", "enabled", "quota_bytes", "sieve"]);
    if (!isAddress(newDoc.address, LOCAL) || key !== newDoc.address) fail("mailbox: address must be a lowercase address equal to the id");
    // "!" (as in /etc/shadow) is a mailbox nobody can log in to yet: it receives mail until a password is set.
    if (typeof newDoc.password !== "string" || !(HASH.test(newDoc.password) || newDoc.password === NO_LOGIN)) {
      fail('mailbox: password must be a {BLF-CRYPT} (cost >= 10) or {ARGON2ID} hash, or "!" for no login');
    }
    if (typeof newDoc.enabled !== "boolean") fail("mailbox: enabled must be a boolean");
    if (newDoc.quota_bytes !== undefined) {
      const q = newDoc.quota_bytes;
      if (typeof q !== "number" || !(q >= 0) || Math.floor(q) !== q || q > 1e15) fail("mailbox: quota_bytes must be a whole number of bytes");
    }
    if (newDoc.sieve !== undefined) {
      const s = newDoc.sieve;
      if (s === null || typeof s !== "object" || Array.isArray(s)) fail("mailbox: sieve must be an object of named scripts");
      for (const name in s) {
        const script = s[name];
        if (!SIEVE_NAME.test(name)) fail("mailbox: bad sieve script name " + name);
        if (script === null || typeof script !== "object") fail("mailbox: sieve." + name + " must be an object");
        if (typeof script.script !== "string" || script.script.length > 1048576) fail("mailbox: sieve." + name + ".script must be a string up to 1 MiB");
        if (typeof script.rev !== "number" || script.rev < 1 || Math.floor(script.rev) !== script.rev)
          fail("mailbox: sieve." + name + ".rev must be a positive integer");
        for (const k in script) if (k !== "script" && k !== "rev") fail("mailbox: unexpected field sieve." + name + "." + k);
      }
    }
  } else if (type === "alias") {
    onlyKeys(newDoc, ["type", "source", "targets"]);
    const src = newDoc.source;
    const catchAll = typeof src === "string" && src.charAt(0) === "@" && isDomain(src.slice(1));
    if (!(catchAll || isAddress(src, LOCAL)) || key !== src) fail("alias: source must be an address or @domain equal to the id");
    const t = newDoc.targets;
    if (!Array.isArray(t) || t.length < 1 || t.length > 1000) fail("alias: targets must be a list of 1 to 1000 addresses");
    for (let i = 0; i < t.length; i++) {
      if (!isAddress(t[i], TARGET_LOCAL)) fail("alias: bad target " + String(t[i]));
      if (t.indexOf(t[i]) !== i) fail("alias: duplicate target " + t[i]);
    }
  } else if (type === "settings") {
    // One settings document: where mail to every served domain's role addresses (postmaster@, abuse@) goes.
    if (key !== "roles") fail("settings: the only settings document is settings:roles");
    onlyKeys(newDoc, ["type", "postmaster"]);
    if (!isAddress(newDoc.postmaster, TARGET_LOCAL)) fail("settings: postmaster must be a lowercase address");
  } else {
    fail("unknown document type in id " + id);
  }
}
