import fc from "fast-check";
import { NetstringDecoder, NetstringError, encodeNetstring } from "../src/netstring";

describe("netstring decoder", () => {
  it("decodes pipelined frames and keeps a partial one for later", () => {
    const d = new NetstringDecoder(100);
    const frames = d.push(Buffer.from("3:abc,0:,5:hel"));
    expect(frames.map(String)).toEqual(["abc", ""]);
    expect(d.push(Buffer.from("lo,")).map(String)).toEqual(["hello"]);
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
    expect(() => d.push(Buffer.from(input))).toThrow(why);
  });

  it("rejects an endless length before buffering it", () => {
    const d = new NetstringDecoder(4096);
    expect(() => d.push(Buffer.from("9".repeat(10)))).toThrow(NetstringError);
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
          got.push(...d.push(wire.subarray(prev, p)).map((b) => b.toString("utf8")));
          prev = p;
        }
        expect(got).toEqual(strings);
      }),
    );
  });

  it("random bytes either decode or raise NetstringError, nothing else (fuzz)", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
        const d = new NetstringDecoder(64);
        try {
          for (const c of chunks) d.push(Buffer.from(c));
        } catch (e) {
          expect(e).toBeInstanceOf(NetstringError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
