// `couchmail sync`: what the deploy's Job runs so the datastore matches the stack's config.
import { AdminError, EXIT, sync, userAdd, userList } from "../src/admin";
import { Couch } from "../src/couch";
import { DESIGN_ID } from "../src/model";
import { TestCouch, startCouch } from "./couchdb";

let server: TestCouch;
let n = 0;
/** A fresh database per test: each starts from what a new stack has (nothing). */
const fresh = () => new Couch({ url: server.url, db: `sync${++n}` });

beforeAll(async () => {
  server = await startCouch();
});
afterAll(() => server.stop());

async function revs(couch: Couch): Promise<Record<string, string>> {
  const all = await couch.json<{ rows: { id: string; value: { rev: string } }[] }>("GET", "/_all_docs");
  return Object.fromEntries(all.rows.map((r) => [r.id, r.value.rev]));
}

describe("couchmail sync", () => {
  it("on a fresh datastore: database, design document, every listed domain, the role target and a postmaster mailbox without login", async () => {
    const couch = fresh();
    const r = await sync(couch, { domains: ["Example.test", "example.org"], postmaster: "postmaster@example.test" });
    expect(r).toEqual({
      design: "created",
      created: ["example.test", "example.org"],
      present: [],
      unlisted: [],
      removed: [],
      postmaster: { address: "postmaster@example.test", roles: "created", delivery: "mailbox created" },
    });
    expect(await couch.get(DESIGN_ID)).not.toBeNull();
    expect(await couch.get("settings:roles")).toMatchObject({ type: "settings", postmaster: "postmaster@example.test" });
    expect(await userList(couch)).toEqual([{ address: "postmaster@example.test", enabled: true, login: false, quota_bytes: null, sieve: [] }]);
  });

  it("is idempotent: a second run writes nothing", async () => {
    const couch = fresh();
    await sync(couch, { domains: ["example.test"], postmaster: "postmaster@example.test" });
    const before = await revs(couch);
    const again = await sync(couch, { domains: ["example.test"], postmaster: "postmaster@example.test" });
    expect(again).toMatchObject({ design: "unchanged", created: [], present: ["example.test"], postmaster: { roles: "unchanged", delivery: "mailbox" } });
    expect(await revs(couch)).toEqual(before);
  });

  it("then the addFirstUser command (user add of the postmaster) gives that mailbox its password", async () => {
    const couch = fresh();
    await sync(couch, { domains: ["example.test"], postmaster: "postmaster@example.test" });
    expect(await userAdd(couch, "postmaster@example.test", "a long password", {})).toBe("password set");
    expect((await userList(couch))[0]).toMatchObject({ login: true, enabled: true });
    await expect(userAdd(couch, "postmaster@example.test", "another password", {})).rejects.toMatchObject({ exitCode: EXIT.conflict });
  });

  it("reports domains the list no longer names and keeps them with their mailboxes; deletes them only when asked", async () => {
    const couch = fresh();
    await sync(couch, { domains: ["example.test", "old.test"], postmaster: "postmaster@example.test" });
    await userAdd(couch, "alice@old.test", "a long password", {});
    const kept = await sync(couch, { domains: ["example.test"], postmaster: "postmaster@example.test" });
    expect(kept).toMatchObject({ unlisted: ["old.test"], removed: [] });
    expect(await couch.get("domain:old.test")).not.toBeNull();
    expect(await couch.get("mailbox:alice@old.test")).not.toBeNull();
    const deleted = await sync(couch, { domains: ["example.test"], postmaster: "postmaster@example.test", deleteUnlisted: true });
    expect(deleted).toMatchObject({ unlisted: [], removed: [{ domain: "old.test", mailboxes: 1, aliases: 0 }] });
    expect(await couch.get("domain:old.test")).toBeNull();
    expect(await couch.get("mailbox:alice@old.test")).toBeNull();
  });

  it("makes no mailbox for a postmaster on another server or one the user aliased; a new target updates the roles", async () => {
    const couch = fresh();
    expect((await sync(couch, { domains: ["example.test"], postmaster: "ops@else.net" })).postmaster).toEqual({
      address: "ops@else.net",
      roles: "created",
      delivery: "elsewhere",
    });
    expect(await userList(couch)).toEqual([]);
    await couch.put({ _id: "alias:dmarc@example.test", type: "alias", source: "dmarc@example.test", targets: ["ops@else.net"] } as never);
    expect((await sync(couch, { domains: ["example.test"], postmaster: "dmarc@example.test" })).postmaster).toEqual({
      address: "dmarc@example.test",
      roles: "updated",
      delivery: "alias",
    });
    expect(await userList(couch)).toEqual([]);
  });

  it.each([
    [{ domains: [], postmaster: "postmaster@example.test" }, /--domains must list at least one domain/],
    [{ domains: ["example.test", ""], postmaster: "postmaster@example.test" }, /--domains must list/],
    [{ domains: ["exa/mple.test"], postmaster: "postmaster@example.test" }, /invalid domain key/],
    [{ domains: ["example.test"], postmaster: "nobody" }, /--postmaster "nobody" is not an address/],
  ])("refuses bad input before touching the datastore: %j", async (input, message) => {
    const couch = fresh();
    const err = await sync(couch, input).catch((e) => e);
    expect(err).toBeInstanceOf(AdminError);
    expect(err).toMatchObject({ exitCode: EXIT.usage, message: expect.stringMatching(message) });
    await expect(couch.json("GET", "")).rejects.toMatchObject({ status: 404 });
  });
});
