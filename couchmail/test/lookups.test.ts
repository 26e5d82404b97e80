import { Snapshot } from "../src/cache";
import { lookupAlias, lookupDomain, lookupMailbox, lookupSender, passdb, sieveLookup, userdb } from "../src/lookups";
import { EMPTY_SIEVE_ID, sieveId } from "../src/model";
import { HASH, alias, domain, mailbox, snapshotOf } from "./fixtures";

const opts = { mailHome: "/var/mail/vhosts" };
const s = snapshotOf([
  domain("example.org"),
  mailbox("alice@example.org", { quota_bytes: 1024 ** 3, sieve: { default: { script: "keep;", rev: 3 } } }),
  mailbox("bob@example.org"),
  mailbox("carol@example.org", { enabled: false }),
  alias("info@example.org", ["alice@example.org", "bob@example.org", "ext@else.net", "carol@example.org"]),
  alias("@example.org", ["alice@example.org"]),
]);

describe("postfix maps", () => {
  it("domains", () => {
    expect(lookupDomain(s, "Example.ORG")).toEqual({ kind: "ok", value: "example.org" });
    expect(lookupDomain(s, "else.net")).toEqual({ kind: "notfound" });
  });
  it("mailboxes, with +extensions resolved by the server", () => {
    expect(lookupMailbox(s, "alice@example.org")).toEqual({ kind: "ok", value: "alice@example.org" });
    expect(lookupMailbox(s, "Alice+lists@Example.org")).toEqual({ kind: "ok", value: "alice@example.org" });
    expect(lookupMailbox(s, "nobody@example.org").kind).toBe("notfound");
    expect(lookupMailbox(s, "+x@example.org").kind).toBe("notfound");
    expect(lookupMailbox(s, "example.org").kind).toBe("notfound");
  });
  it("aliases: explicit, mailbox passthrough, catch-all", () => {
    expect(lookupAlias(s, "info+x@example.org")).toEqual({ kind: "ok", value: "alice@example.org,bob@example.org,ext@else.net,carol@example.org" });
    expect(lookupAlias(s, "bob@example.org").kind).toBe("notfound");
    expect(lookupAlias(s, "bob+tag@example.org").kind).toBe("notfound");
    expect(lookupAlias(s, "random@example.org")).toEqual({ kind: "ok", value: "alice@example.org" });
    expect(lookupAlias(s, "random@else.net").kind).toBe("notfound");
    expect(lookupAlias(s, "example.org").kind).toBe("notfound");
  });
  it("sender logins: self and aliases pointing at enabled mailboxes, never catch-alls", () => {
    expect(lookupSender(s, "alice+x@example.org")).toEqual({ kind: "ok", value: "alice@example.org" });
    expect(lookupSender(s, "info@example.org")).toEqual({ kind: "ok", value: "alice@example.org,bob@example.org" });
    expect(lookupSender(s, "carol@example.org").kind).toBe("notfound");
    expect(lookupSender(s, "random@example.org").kind).toBe("notfound");
  });
  it("a malformed document makes every lookup touching it TEMP, never NOTFOUND", () => {
    const b = new Snapshot();
    b.apply("domain:example.org", false, domain("example.org") as never);
    expect(
      b.apply("mailbox:dave@example.org", false, {
        _id: "mailbox:dave@example.org",
        type: "mailbox",
        address: "dave@example.org",
        password: "{PLAIN}x",
        enabled: true,
      }),
    ).toMatch(/password/);
    expect(lookupMailbox(b, "dave@example.org").kind).toBe("temp");
    expect(lookupAlias(b, "dave+x@example.org").kind).toBe("temp");
    expect(lookupSender(b, "dave@example.org").kind).toBe("temp");
    expect(passdb(b, "dave@example.org", opts).kind).toBe("temp");
    expect(sieveLookup(b, "dave@example.org", "priv/sieve/name/default").kind).toBe("temp");
    expect(lookupMailbox(b, "erin@example.org").kind).toBe("notfound");
    // Fixed by a later revision: healthy again.
    b.apply("mailbox:dave@example.org", false, mailbox("dave@example.org") as never);
    expect(lookupMailbox(b, "dave@example.org").kind).toBe("ok");
  });
});

describe("dovecot lookups", () => {
  it("passdb returns the hash and prefetched userdb fields; disabled or unknown users are not found", () => {
    expect(passdb(s, "Alice@example.org", opts)).toEqual({
      kind: "ok",
      fields: { user: "alice@example.org", password: HASH, userdb_home: "/var/mail/vhosts/example.org/alice", userdb_quota_storage_size: "1G" },
    });
    expect(passdb(s, "carol@example.org", opts).kind).toBe("notfound");
    expect(passdb(s, "alice+x@example.org", opts).kind).toBe("notfound");
    expect(passdb(s, "nobody@example.org", opts).kind).toBe("notfound");
  });
  it("userdb serves disabled users too (mail keeps arriving) and never includes the hash", () => {
    expect(userdb(s, "carol@example.org", opts)).toEqual({ kind: "ok", fields: { user: "carol@example.org", home: "/var/mail/vhosts/example.org/carol" } });
    expect(JSON.stringify(userdb(s, "alice@example.org", opts))).not.toContain("BLF");
  });
  it("sieve: stored script by id, an empty script for known users without one, nothing for strangers", () => {
    const id = sieveId({ script: "keep;", rev: 3 });
    expect(sieveLookup(s, "alice@example.org", "priv/sieve/name/default")).toEqual({ kind: "ok", value: id });
    expect(sieveLookup(s, "alice@example.org", `priv/sieve/data/${id}`)).toEqual({ kind: "ok", value: "keep;" });
    expect(sieveLookup(s, "bob@example.org", "priv/sieve/name/default")).toEqual({ kind: "ok", value: EMPTY_SIEVE_ID });
    expect(sieveLookup(s, "bob@example.org", `priv/sieve/data/${EMPTY_SIEVE_ID}`)).toEqual({ kind: "ok", value: "" });
    // Another user's id is not served to bob.
    expect(sieveLookup(s, "bob@example.org", `priv/sieve/data/${id}`).kind).toBe("temp");
    expect(sieveLookup(s, "nobody@example.org", "priv/sieve/name/default").kind).toBe("notfound");
    expect(sieveLookup(s, "alice@example.org", "shared/other").kind).toBe("temp");
  });
});
