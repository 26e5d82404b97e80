// Role addresses: postmaster@ and abuse@ of every served domain reach the postmaster target that
// `couchmail sync` stores, unless the user made an alias or mailbox for them; any doubt is a TEMP.
import { Snapshot } from "../src/cache";
import { lookupAlias, lookupMailbox, lookupSender, passdb, userdb } from "../src/lookups";
import { invalidReason } from "../src/model";
import { alias, domain, mailbox, snapshotOf } from "./fixtures";

const roles = (postmaster: string) => ({ _id: "settings:roles", type: "settings", postmaster });
/** The postmaster mailbox `sync` creates: mail is kept, nobody can log in until a password is set. */
const loginless = (address: string) => mailbox(address, { password: "!" });
const opts = { mailHome: "/var/mail/vhosts" };

describe("role addresses of served domains", () => {
  const s = snapshotOf([
    domain("example.org"),
    domain("example.net"),
    domain("example.com"),
    loginless("postmaster@example.org"),
    roles("postmaster@example.org"),
    // The user's own choices for example.com: an alias for postmaster@, a mailbox for abuse@.
    alias("postmaster@example.com", ["ops@else.net"]),
    mailbox("abuse@example.com"),
    alias("@example.net", ["catchall@example.org"]),
  ]);

  it.each(["postmaster@example.net", "abuse@example.net", "abuse@example.org", "Postmaster+dmarc@Example.NET"])("%s goes to the postmaster target", (rcpt) => {
    expect(lookupAlias(s, rcpt)).toEqual({ kind: "ok", value: "postmaster@example.org" });
  });

  it("the target's own address is its mailbox (no rewrite), which receives but cannot log in", () => {
    expect(lookupAlias(s, "postmaster@example.org")).toEqual({ kind: "notfound" });
    expect(lookupMailbox(s, "postmaster@example.org")).toEqual({ kind: "ok", value: "postmaster@example.org" });
    expect(userdb(s, "postmaster@example.org", opts).kind).toBe("ok");
    expect(passdb(s, "postmaster@example.org", opts)).toEqual({ kind: "notfound" });
  });

  it("a user's own alias or mailbox wins; a catch-all does not take role addresses", () => {
    expect(lookupAlias(s, "postmaster@example.com")).toEqual({ kind: "ok", value: "ops@else.net" });
    expect(lookupAlias(s, "abuse@example.com")).toEqual({ kind: "notfound" });
    expect(lookupAlias(s, "info@example.net")).toEqual({ kind: "ok", value: "catchall@example.org" });
  });

  it("only postmaster and abuse, only of served domains", () => {
    expect(lookupAlias(s, "hostmaster@example.org")).toEqual({ kind: "notfound" });
    expect(lookupAlias(s, "postmaster@else.net")).toEqual({ kind: "notfound" });
  });

  it("the postmaster's mailbox may send as the role addresses nobody else claimed", () => {
    // Owning is not logging in: the mailbox can send as them once it has a password.
    expect(lookupSender(s, "abuse@example.net")).toEqual({ kind: "ok", value: "postmaster@example.org" });
    const external = snapshotOf([domain("example.org"), roles("ops@else.net")]);
    expect(lookupSender(external, "postmaster@example.org")).toEqual({ kind: "notfound" });
    expect(lookupSender(s, "postmaster@example.com")).toEqual({ kind: "notfound" });
  });
});

describe("role addresses when in doubt: temporary failure, never a bounce", () => {
  it("before sync stored a target", () => {
    const s = snapshotOf([domain("example.org")]);
    expect(lookupAlias(s, "postmaster@example.org")).toMatchObject({ kind: "temp", why: expect.stringMatching(/couchmail sync has not run/) });
    expect(lookupSender(s, "abuse@example.org").kind).toBe("temp");
  });

  it("when the settings or the domain document is malformed", () => {
    const s = snapshotOf([domain("example.org")]);
    expect(s.apply("settings:roles", false, { ...roles("not an address") })).toMatch(/postmaster/);
    expect(lookupAlias(s, "abuse@example.org").kind).toBe("temp");
  });

  it("when the target is the address itself and its mailbox is gone", () => {
    const s = snapshotOf([domain("example.org"), roles("postmaster@example.org")]);
    expect(lookupAlias(s, "postmaster@example.org")).toMatchObject({ kind: "temp", why: expect.stringMatching(/has no mailbox/) });
    expect(lookupAlias(s, "abuse@example.org")).toEqual({ kind: "ok", value: "postmaster@example.org" });
  });

  it("a deleted settings document takes the target away again", () => {
    const s = snapshotOf([domain("example.org"), loginless("postmaster@example.org"), roles("postmaster@example.org")]);
    s.apply("settings:roles", true, undefined);
    expect(lookupAlias(s, "abuse@example.org").kind).toBe("temp");
  });
});

describe("the datastore's rules for the new documents", () => {
  it("one settings document, settings:roles, with a postmaster address (ours or another server's)", () => {
    expect(invalidReason(roles("ops+dmarc@else.net"))).toBeNull();
    expect(invalidReason({ ...roles("a@example.org"), _id: "settings:other" })).toMatch(/only settings document/);
    expect(invalidReason({ ...roles("a@example.org"), extra: 1 })).toMatch(/unexpected field extra/);
    expect(invalidReason(roles("Upper@example.org"))).toMatch(/postmaster must be/);
  });

  it('"!" is the only password that is not a hash', () => {
    expect(invalidReason(loginless("postmaster@example.org"))).toBeNull();
    expect(invalidReason(mailbox("a@example.org", { password: "" }))).toMatch(/password must be/);
    expect(invalidReason(mailbox("a@example.org", { password: "!!" }))).toMatch(/password must be/);
  });

  it("the settings document is not a domain, mailbox or alias to the snapshot", () => {
    const s = new Snapshot();
    expect(s.apply("settings:roles", false, roles("a@example.org"))).toBeNull();
    expect(s.size).toBe(0);
    expect(s.roles?.postmaster).toBe("a@example.org");
  });
});
