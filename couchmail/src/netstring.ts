/** Postfix socketmap framing: `<decimal length>:<bytes>,`. */

export function encodeNetstring(s: string): Buffer {
  const body = Buffer.from(s, "utf8");
  return Buffer.concat([Buffer.from(`${body.length}:`), body, Buffer.from(",")]);
}

/**
 * Incremental decoder. push() never throws: it returns every complete frame so far and,
 * on malformed or oversized input, an error as well — frames before the bad one still
 * deserve their answers; the caller then answers the error and closes.
 */
export class NetstringDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxDigits: number;

  constructor(private readonly maxLength: number) {
    this.maxDigits = String(maxLength).length;
  }

  push(chunk: Buffer): { frames: Buffer[]; error: string | null } {
    const buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Buffer[] = [];
    let pos = 0;
    const fail = (error: string) => {
      this.buf = Buffer.alloc(0);
      return { frames, error };
    };
    for (;;) {
      let len = 0;
      let i = pos;
      while (i < buf.length && buf[i] >= 0x30 && buf[i] <= 0x39) {
        len = len * 10 + (buf[i] - 0x30);
        i++;
        if (i - pos > this.maxDigits || len > this.maxLength) return fail(`netstring longer than ${this.maxLength} bytes`);
      }
      if (i === buf.length) break; // more digits (or the next frame) still to come
      if (i === pos || buf[i] !== 0x3a) return fail("malformed netstring length");
      const end = i + 1 + len;
      if (end >= buf.length) break; // body or trailing comma still to come
      if (buf[end] !== 0x2c) return fail("netstring not terminated by a comma");
      frames.push(buf.subarray(i + 1, end));
      pos = end + 1;
    }
    // Copy the leftover so it never pins a large earlier chunk in memory.
    this.buf = pos === 0 ? buf : Buffer.from(buf.subarray(pos));
    return { frames, error: null };
  }
}
