import { assertSelfContained, designDoc, docId, dovecotSize, invalidReason, parseDocId, parseSize, sieveId } from "../src/model";
import { validateDocUpdate } from "../src/validate";
import { compileDesignFunction, runValidation } from "./couchdb-js";
import { HASH, alias, domain, mailbox } from "./fixtures";

describe("document ids are safe by construction", () => {
  it.each([
    ["mailbox", "_local/x@example.org"],
    ["mailbox", "a/b@example.org"],
    ["mailbox", "..@example.org"],
    ["mailbox", "a..b@example.org"],
    ["mailbox", "a%2Fb@example.org"],
    ["mailbox", "a\0b@example.org"],
    ["mailbox", "a@exa/mple.org"],
    ["mailbox", "a@../_design"],
    ["domain", "_design"],
    ["domain", "_all_docs"],
    ["domain", "../x"],
    ["domain", "a%2f.org"],
    ["domain", "ex\0ample.org"],
    ["alias", "@_local"],
    ["alias", "x+tag@example.org"],
    ["mailbox", "Upper@example.org"],
  ] as const)("%s %j is refused", (type, key) => {
    expect(() => docId(type, key)).toThrow(/invalid/);
  });

  it("gives type-prefixed ids that never start with _ nor contain / or %", () => {
    for (const id of [docId("domain", "example.org"), docId("mailbox", "a.b-c_d@example.org"), docId("alias", "@example.org")]) {
      expect(id).toMatch(/^(domain|mailbox|alias):[^/%_]/);
      expect(id).not.toMatch(/[/%\0]/);
    }
    expect(parseDocId("mailbox:a@example.org")).toEqual({ type: "mailbox", key: "a@example.org" });
    expect(parseDocId("_design/couchmail")).toBeNull();
    expect(parseDocId("_local/mailbox:a@example.org")).toBeNull();
  });
});

describe("validate_doc_update", () => {
  const ok = [
    domain("example.org"),
    mailbox("a@example.org", { quota_bytes: 1024, sieve: { default: { script: "keep;", rev: 2 } } }),
    alias("@example.org", ["a@example.org", "x+y@else.net"]),
  ];
  it.each(ok.map((d) => [d._id, d]))("accepts %s", (_id, doc) => {
    expect(invalidReason(doc)).toBeNull();
  });

  const bad: [string, unknown][] = [
    ["type mismatch", { ...domain("example.org"), type: "mailbox" }],
    ["name differs from id", { ...domain("example.org"), name: "other.org" }],
    ["unknown type", { _id: "user:a@example.org", type: "user" }],
    ["no prefix", { _id: "example.org", type: "" }],
    ["extra field", { ...domain("example.org"), admin: true }],
    ["plain password", mailbox("a@example.org", { password: "{PLAIN}secret" })],
    ["bcrypt cost 4", mailbox("a@example.org", { password: HASH.replace("$10$", "$04$") })],
    ["enabled not boolean", { ...mailbox("a@example.org"), enabled: "yes" }],
    ["negative quota", mailbox("a@example.org", { quota_bytes: -1 })],
    ["sieve rev 0", mailbox("a@example.org", { sieve: { default: { script: "keep;", rev: 0 } } })],
    ["bad sieve name", mailbox("a@example.org", { sieve: { "../x": { script: "keep;", rev: 1 } } })],
    ["no targets", alias("a@example.org", [])],
    ["duplicate target", alias("a@example.org", ["b@example.org", "b@example.org"])],
    ["target with comma", alias("a@example.org", ["b@example.org,c@example.org"])],
    ["uppercase address", { ...mailbox("a@example.org"), _id: "mailbox:A@example.org", address: "A@example.org" }],
  ];
  it.each(bad)("rejects %s", (_why, doc) => {
    expect(() => validateDocUpdate(doc)).toThrow(expect.objectContaining({ forbidden: expect.any(String) }));
  });

  it("allows deletions and design documents", () => {
    expect(invalidReason({ _id: "mailbox:a@example.org", _deleted: true })).toBeNull();
    expect(invalidReason({ _id: "_design/x", views: {} })).toBeNull();
  });

  it("the design document's source compiles on CouchDB's QuickJS engine and behaves exactly like the function (it is self-contained)", () => {
    const compiled = compileDesignFunction(designDoc().validate_doc_update);
    expect(compiled).toEqual({ ok: true, call: expect.any(Function) });
    const userCtx = { db: "mail", name: "admin", roles: ["_admin"] };
    for (const [, doc] of bad) expect(runValidation(compiled, doc, null, userCtx, {})).toEqual({ status: 403, error: "forbidden", reason: invalidReason(doc) });
    for (const doc of ok) expect(runValidation(compiled, doc, null, userCtx, {})).toBeNull();
  });
});

describe("the design document's source", () => {
  it("is refused when the transpiler made it call a helper CouchDB lacks (esbuild keepNames, as under tsx)", () => {
    const keptNames = 'function (newDoc) { function fail(m) { throw { forbidden: m }; } __name(fail, "fail"); if (newDoc.type !== "domain") fail("no"); }';
    expect(() => assertSelfContained(keptNames)).toThrow(/not self-contained \(ReferenceError: __name is not defined\)/);
    expect(() => assertSelfContained(designDoc().validate_doc_update)).not.toThrow();
  });
});

describe("helpers", () => {
  it("sieve ids change with revision and content", () => {
    const a = sieveId({ script: "keep;", rev: 1 });
    expect(sieveId({ script: "keep;", rev: 2 })).not.toBe(a);
    expect(sieveId({ script: "discard;", rev: 1 })).not.toBe(a);
    expect(a).toMatch(/^[a-z0-9-]+$/);
  });
  it("sizes", () => {
    expect(parseSize("2G")).toBe(2 * 1024 ** 3);
    expect(parseSize("1048576")).toBe(1048576);
    expect(() => parseSize("1.5G")).toThrow(/invalid size/);
    expect(dovecotSize(2 * 1024 ** 3)).toBe("2G");
    expect(dovecotSize(1536 * 1024)).toBe("1536k");
    expect(dovecotSize(1000)).toBe("1000B");
  });
});
