/** Postfix socketmap framing: `<decimal length>:<bytes>,`. */

export class NetstringError extends Error {}

export function encodeNetstring(s: string): Buffer {
  const body = Buffer.from(s, "utf8");
  return Buffer.concat([Buffer.from(`${body.length}:`), body, Buffer.from(",")]);
}

/**
 * Incremental decoder. push() returns every complete frame so far, or throws
 * NetstringError on malformed or oversized input (the caller answers and closes).
 */
export class NetstringDecoder {
  private buf: Buffer = Buffer.alloc(0);
  private readonly maxDigits: number;

  constructor(private readonly maxLength: number) {
    this.maxDigits = String(maxLength).length;
  }

  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const frames: Buffer[] = [];
    let pos = 0;
    for (;;) {
      let len = 0;
      let i = pos;
      while (i < this.buf.length && this.buf[i] >= 0x30 && this.buf[i] <= 0x39) {
        len = len * 10 + (this.buf[i] - 0x30);
        i++;
        if (i - pos > this.maxDigits || len > this.maxLength) throw new NetstringError(`netstring longer than ${this.maxLength} bytes`);
      }
      if (i === this.buf.length) break; // need more digits (or nothing left)
      if (i === pos || this.buf[i] !== 0x3a) throw new NetstringError("malformed netstring length");
      const end = i + 1 + len;
      if (end >= this.buf.length) break; // body or trailing comma not here yet
      if (this.buf[end] !== 0x2c) throw new NetstringError("netstring not terminated by a comma");
      frames.push(this.buf.subarray(i + 1, end));
      pos = end + 1;
    }
    this.buf = pos ? this.buf.subarray(pos) : this.buf;
    // Copy so a frame never pins a large earlier chunk in memory.
    if (pos) this.buf = Buffer.from(this.buf);
    return frames;
  }
}
