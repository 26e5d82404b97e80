import fc from "fast-check";
import { NetstringDecoder, encodeNetstring } from "../src/netstring";

describe("netstring decoder", () => {
  it("decodes pipelined frames and keeps a partial one for later", () => {
    const d = new NetstringDecoder(100);
    const first = d.push(Buffer.from("3:abc,0:,5:hel"));
    expect(first.frames.map(String)).toEqual(["abc", ""]);
    expect(first.error).toBeNull();
    expect(d.push(Buffer.from("lo,")).frames.map(String)).toEqual(["hello"]);
  });

  it.each([
    ["x:abc,", "malformed netstring length"],
    [":abc,", "malformed netstring length"],
    ["3:abcd", "not terminated by a comma"],
    ["-1:a,", "malformed netstring length"],
    ["101:", "longer than 100"],
    ["0000000000001:a,", "longer than 100"],
  ])("rejects %j", (input, why) => {
    const d = new NetstringDecoder(100);
    expect(d.push(Buffer.from(input)).error).toContain(why);
  });

  it("returns the frames before a bad one along with the error", () => {
    const d = new NetstringDecoder(100);
    expect(d.push(Buffer.from("1:a,1:b,1:cX"))).toEqual({ frames: [Buffer.from("a"), Buffer.from("b")], error: "netstring not terminated by a comma" });
  });

  it("rejects an endless length before buffering it", () => {
    const d = new NetstringDecoder(4096);
    expect(d.push(Buffer.from("9".repeat(10))).error).toMatch(/longer than/);
  });

  it("round-trips any frames split at any points (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 50 }), { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 5 }), (strings, cuts) => {
        const wire = Buffer.concat(strings.map(encodeNetstring));
        const points = [...new Set(cuts.map((c) => (wire.length ? c % wire.length : 0)))].sort((a, b) => a - b);
        const d = new NetstringDecoder(1000);
        const got: string[] = [];
        let prev = 0;
        for (const p of [...points, wire.length]) {
          const r = d.push(wire.subarray(prev, p));
          expect(r.error).toBeNull();
          got.push(...r.frames.map((b) => b.toString("utf8")));
          prev = p;
        }
        expect(got).toEqual(strings);
      }),
    );
  });

  it("random bytes never throw; every frame is within the limit (fuzz)", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const d = new NetstringDecoder(64);
        for (const c of chunks) {
          const r = d.push(Buffer.from(c));
          for (const f of r.frames) expect(f.length).toBeLessThanOrEqual(64);
          if (r.error) break;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
