import fc from "fast-check";
import type { Cache } from "../src/cache";
import type { GuardContext } from "../src/guard";
import { DictProtocolError, handleLine, newSession, splitArgs, tabEscape, tabUnescape } from "../src/dict";
import { sieveId } from "../src/model";
import { mailbox, snapshotOf } from "./fixtures";

const snapshot = snapshotOf([
  mailbox("alice@example.org", { sieve: { default: { script: 'require "fileinto";\nfileinto "A";\t# tab', rev: 1 } } }),
  mailbox("bob@example.org", { sieve: { default: { script: "discard;", rev: 1 } } }),
]);
const loaded: GuardContext = { cache: { snapshot } as unknown as Cache, metrics: null, log: null };
const notLoaded: GuardContext = { cache: { snapshot: null } as unknown as Cache, metrics: null, log: null };

const hello4 = (user = "") => `H4\t0\t0\t${user}\tsieve`;

describe("dict protocol", () => {
  it("escapes like Dovecot's str_tabescape and round-trips any string (property)", () => {
    expect(tabEscape("a\tb\nc\rd\x01e")).toBe("a\x01tb\x01nc\x01rd\x011e");
    fc.assert(fc.property(fc.string({ unit: "binary" }), (s) => expect(tabUnescape(tabEscape(s))).toBe(s)));
  });

  it("rejects dangling and unknown escapes", () => {
    expect(() => tabUnescape("abc\x01")).toThrow(DictProtocolError);
    expect(() => tabUnescape("a\x01zb")).toThrow(DictProtocolError);
  });

  it("answers v4 lookups in order with per-request users; hello has no reply", () => {
    const s = newSession();
    expect(handleLine(loaded, s, hello4()).reply).toBeNull();
    const id = sieveId(snapshot.mailboxes.get("alice@example.org")!.sieve!.default);
    expect(handleLine(loaded, s, "Lpriv/sieve/name/default\talice@example.org").reply).toBe(`O${id}\n`);
    const data = handleLine(loaded, s, `Lpriv/sieve/data/${id}\talice@example.org`).reply!;
    expect(data).not.toMatch(/\t/);
    expect(tabUnescape(data.slice(1, -1))).toBe('require "fileinto";\nfileinto "A";\t# tab');
    expect(handleLine(loaded, s, "Lpriv/sieve/name/default\tnobody@example.org").reply).toBe("N\n");
  });

  it("v3 (Dovecot 2.3): the user comes from the hello when a lookup has none", () => {
    const s = newSession();
    handleLine(loaded, s, "H3\t2\t0\tbob@example.org\tsieve");
    expect(handleLine(loaded, s, "Lpriv/sieve/name/default").reply).toMatch(/^Or1-/);
  });

  it("two sessions never share a user", () => {
    const a = newSession();
    const b = newSession();
    handleLine(loaded, a, "H3\t2\t0\talice@example.org\tsieve");
    handleLine(loaded, b, "H3\t2\t0\tbob@example.org\tsieve");
    const ida = handleLine(loaded, a, "Lpriv/sieve/name/default").reply!.slice(1, -1);
    const idb = handleLine(loaded, b, "Lpriv/sieve/name/default").reply!.slice(1, -1);
    expect(tabUnescape(handleLine(loaded, a, `Lpriv/sieve/data/${ida}`).reply!.slice(1, -1))).toContain("fileinto");
    expect(handleLine(loaded, b, `Lpriv/sieve/data/${idb}`).reply).toBe("Odiscard;\n");
    expect(handleLine(loaded, b, `Lpriv/sieve/data/${ida}`).reply).toMatch(/^F/);
  });

  it("fails every lookup until the first load", () => {
    const s = newSession();
    handleLine(notLoaded, s, hello4());
    expect(handleLine(notLoaded, s, "Lpriv/sieve/name/default\talice@example.org").reply).toMatch(/^F/);
  });

  it("answers iterations and commits with failures; writes are accepted silently", () => {
    const s = newSession();
    handleLine(loaded, s, hello4());
    expect(handleLine(loaded, s, "I0\t0\tpriv/sieve/\talice@example.org").reply).toMatch(/^F/);
    expect(handleLine(loaded, s, "B1").reply).toBeNull();
    expect(handleLine(loaded, s, "S1\tpriv/x\ty").reply).toBeNull();
    expect(handleLine(loaded, s, "C1").reply).toBe("F1\n");
    handleLine(loaded, s, "B2");
    expect(handleLine(loaded, s, "D2").reply).toBe("AF2\n");
    handleLine(loaded, s, "B3");
    expect(handleLine(loaded, s, "R3").reply).toBeNull();
    expect(() => handleLine(loaded, s, "C3")).toThrow(DictProtocolError);
  });

  it.each([
    ["command before hello", "Lpriv/sieve/name/default\tx"],
    ["unsupported protocol version", "H9\t0\t0\t\tsieve"],
  ])("%s is a protocol error", (why, line) => {
    expect(() => handleLine(loaded, newSession(), line)).toThrow(why);
  });

  it("random lines never raise anything but DictProtocolError (fuzz)", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: "binary", maxLength: 80 }), { maxLength: 10 }), fc.boolean(), (lines, greet) => {
        const s = newSession();
        if (greet) handleLine(loaded, s, hello4());
        for (const l of lines) {
          try {
            const r = handleLine(loaded, s, l);
            if (r.reply !== null) expect(r.reply).toMatch(/^[^\n]*\n$/);
          } catch (e) {
            expect(e).toBeInstanceOf(DictProtocolError);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  it("splits escaped arguments", () => {
    expect(splitArgs("a\x01tb\tc")).toEqual(["a\tb", "c"]);
  });
});
