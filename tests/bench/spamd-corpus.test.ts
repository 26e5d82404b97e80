import { corpus, sizedMessage } from "./spamd-corpus";

describe("the spamd benchmark's messages", () => {
    test("the corpus is the same bytes every time, and a different one for another seed", () => {
        expect(corpus(8)).toEqual(corpus(8));
        expect(corpus(8, 2)).not.toEqual(corpus(8));
        expect(corpus(8).every((m) => /^Message-ID: <bench-\d+@example\.net>\r$/m.test(m))).toBe(true);
    });

    test.each([4096, 512_000, 512_001, 2 * 1024 * 1024, 2 * 1024 * 1024 + 1])("a sized message is exactly %d bytes, either shape", (bytes) => {
        const attachment = sizedMessage(bytes);
        expect(Buffer.byteLength(attachment)).toBe(bytes);
        expect(attachment.endsWith("\r\n--sized--\r\n")).toBe(true);
        const text = sizedMessage(bytes, 1, "text");
        expect(Buffer.byteLength(text)).toBe(bytes);
        expect(text).toMatch(/^Content-Type: text\/plain; charset=utf-8\r$/m);
    });

    test("a size too small for the headers is refused, naming the minimum", () => {
        expect(() => sizedMessage(100)).toThrow(/100 bytes is too small for the message's headers \(\d+ at least\)/);
    });
});
